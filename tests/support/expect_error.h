// expect_input_error(call, {parts...}): the call must throw dsv4::InputError whose message holds
// every one of `parts` (a clear "no InputError" / "not an InputError" failure otherwise).
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <initializer_list>
#include <string>

#include "reference/errors.h"

namespace dsv4::test {

template <class F>
void expect_input_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message lacks '" << p << "': " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an InputError: " << e.what();
  }
}

}  // namespace dsv4::test
