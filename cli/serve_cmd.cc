#include "cli/serve_cmd.h"

#include <fmt/core.h>
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <thread>

#include "evals/engine_backend.h"
#include "evals/numerics.h"
#include "evals/openai_server.h"
#include "reference/errors.h"

namespace dsv4::cli {

namespace {

constexpr double kBytesPerMiB = 1024.0 * 1024.0;

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeArgs& a) {
  auto* c = app.add_subcommand("serve", "serve a checkpoint over an OpenAI-compatible HTTP API");
  c->add_option("--model", a.model, "checkpoint directory")->required();
  c->add_option("--backend", a.backend, "ref | cuda")->default_str(a.backend);
  c->add_option("--numerics", a.numerics,
                "official | exact; default: from probe.json knobs.quant, else official");
  c->add_option("--kv-layout", a.kv_layout, "f32 | bf16 | fp8")->default_str(a.kv_layout);
  c->add_option("--chunk", a.chunk, "prefill chunk, tokens")->default_str(std::to_string(a.chunk));
  c->add_option("--host", a.host, "address to listen on")->default_str(a.host);
  c->add_option("--port", a.port, "port (0: any free port, printed)")
      ->default_str(std::to_string(a.port));
  c->add_option("--model-name", a.model_name,
                "the name clients send as \"model\" (default: DIR's name)");
  c->add_option("--max-prompt-tokens", a.max_prompt_tokens, "longer prompts get 400")
      ->default_str(std::to_string(a.max_prompt_tokens));
  c->add_option("--max-new-tokens", a.max_new_tokens, "largest max_tokens accepted")
      ->default_str(std::to_string(a.max_new_tokens));
  c->add_option("--max-logprobs", a.max_logprobs,
                "largest logprobs accepted (0: any; the top-N stops at the vocabulary)")
      ->default_str(std::to_string(a.max_logprobs));
  c->add_option("--max-echo-tokens", a.max_echo_tokens,
                "longest prompt for echo with logprobs (one prefill per token)")
      ->default_str(std::to_string(a.max_echo_tokens));
  c->add_option("--max-body-mb", a.max_body_mb, "largest request body, MiB (larger: 413)")
      ->default_str("64");
  c->add_option("--max-queue", a.max_queue, "requests running + waiting (more: 503)")
      ->default_str(std::to_string(a.max_queue));
  return c;
}

int serve_command(const ServeArgs& a) {
  try {
    namespace fs = std::filesystem;
    if (!fs::is_directory(a.model))
      throw InputError("--model: '" + a.model + "' is not a directory");
    if (!(a.max_body_mb > 0)) throw InputError("--max-body-mb must be positive");
    const evals::NumericsChoice numerics = evals::choose_numerics(a.numerics, a.model);
    evals::EngineModel model(
        a.model, evals::EngineOptions{a.backend, numerics.numerics, a.kv_layout, a.chunk});
    evals::ServeOptions o;
    o.host = a.host;
    o.port = a.port;
    o.model_name =
        a.model_name.empty() ? fs::weakly_canonical(a.model).filename().string() : a.model_name;
    o.vocab_size = model.vocab_size();
    o.max_prompt_tokens = a.max_prompt_tokens;
    o.max_new_tokens = a.max_new_tokens;
    o.max_logprobs = a.max_logprobs;
    o.max_echo_tokens = a.max_echo_tokens;
    o.max_body_bytes = size_t(a.max_body_mb * kBytesPerMiB);
    o.max_queue = a.max_queue;
    // SIGINT/SIGTERM are blocked in every thread (the server's threads inherit the mask) and
    // taken by one waiting thread, which stops the server: run() returns and we exit 0.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    evals::OpenAIServer server(model, o);
    const int port = server.bind();
    std::atomic<int> received{0};
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      received = sig;
      server.stop();
    });
    fmt::print("dsv4 serve: listening on http://{}:{} (model {}, numerics {})\n", a.host, port,
               o.model_name, numerics.numerics);
    std::fflush(stdout);
    server.run();
    // run() returned without a signal (the listener failed): wake the waiter to end it.
    const int sig = received.load();
    if (sig == 0) pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    if (sig == 0) {
      fmt::print(stderr, "dsv4 serve: error: the listener on {}:{} stopped\n", a.host, port);
      return 1;
    }
    fmt::print(stderr, "dsv4 serve: stopped by {}\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 serve: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dsv4 serve: error: {}\n", e.what());
    return 1;
  }
}

}  // namespace dsv4::cli
