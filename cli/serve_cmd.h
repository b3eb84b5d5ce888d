// dsv4 serve: this project's engine behind an OpenAI-compatible HTTP API
// (evals/openai_server.h; docs/evals.md "HTTP backend and serve").
//   dsv4 serve --model DIR [--backend ref] [--host 127.0.0.1] --port P [--model-name NAME]
// Prints "dsv4 serve: listening on http://HOST:PORT (model NAME)" on stdout once it accepts
// connections (--port 0: a free port, named there); stops cleanly on SIGINT/SIGTERM (exit 0).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace dsv4::cli {

struct ServeArgs {
  std::string model;
  std::string backend = "ref";
  std::string numerics;  // "" = from probe.json knobs.quant, else official (evals/numerics.h)
  std::string kv_layout = "f32";
  int64_t chunk = 512;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string model_name;  // default: the model directory's name
  int64_t max_prompt_tokens = 1 << 20;
  int64_t max_new_tokens = 4096;
  int64_t max_logprobs = 0;
  int64_t max_echo_tokens = 1024;
  double max_body_mb = 64;
  int max_queue = 8;
};

// Adds the `serve` subcommand to app; returns it.
CLI::App* add_serve_command(CLI::App& app, ServeArgs& a);
// Exit status: 0 stopped by a signal, 1 runtime failure, 2 bad input.
int serve_command(const ServeArgs& a);

}  // namespace dsv4::cli
