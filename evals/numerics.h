// Which numerics the engine runs a checkpoint with (docs/evals.md "Numerics").
//
// A probe checkpoint (DIR/probe.json, written by `dsv4 init --probe`) records in
// knobs.quant how its weights were stored: quant=true -> the release encodings
// (FP8/FP4/BF16), to be run with `official` numerics (the FP8/FP4 simulation); quant=false
// -> plain F32 weights, to be run with `exact` numerics. Rule:
//   --numerics not given, probe.json with knobs.quant   -> official / exact from the probe
//   --numerics not given, otherwise                     -> official (the default)
//   --numerics given and agreeing with the probe (or no probe / no knobs.quant) -> as given
//   --numerics given and contradicting knobs.quant     -> InputError (exit 2)
#pragma once

#include <string>

namespace dsv4::evals {

struct NumericsChoice {
  std::string numerics;  // official | exact
  std::string source;    // "--numerics", "probe.json knobs.quant=true|false", "default"
};

// `requested`: the --numerics value, "" when the user did not pass it. Reads
// `model_dir`/probe.json when it exists (InputError when it is not JSON or knobs.quant is
// not a boolean).
NumericsChoice choose_numerics(const std::string& requested, const std::string& model_dir);

}  // namespace dsv4::evals
