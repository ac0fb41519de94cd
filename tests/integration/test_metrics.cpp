// The /metrics endpoint: the text it renders is read back with an independent parser of the Prometheus
// text format, served over HTTP on an ephemeral port, and counted exactly under concurrent updates.
#include "catch.h"
#include "integration/http_get.h"

#include "metrics.h"
#include "test_pki.h"
#include "test_random.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

using sagevid::MetricsHttpServer;
using sagevid::ServerMetrics;

namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // metric family -> counter | gauge | histogram
  std::vector<Sample> samples;

  std::vector<Sample> find(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    std::vector<Sample> found;
    for (const Sample& sample : samples) {
      const bool labels_match = std::all_of(labels.begin(), labels.end(), [&](const auto& label) {
        const auto it = sample.labels.find(label.first);
        return it != sample.labels.end() && it->second == label.second;
      });
      if (sample.name == name && labels_match) found.push_back(sample);
    }
    return found;
  }
  double value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    const auto found = find(name, labels);
    REQUIRE(found.size() == 1);
    return found[0].value;
  }
};

std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    const char next = text.at(++i);
    out += next == 'n' ? '\n' : next;
  }
  return out;
}

// The family a series belongs to: histogram series carry _bucket/_sum/_count after the family name.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s = suffix;
    if (name.ends_with(s) && types.count(name.substr(0, name.size() - s.size())))
      return name.substr(0, name.size() - s.size());
  }
  return name;
}

// Fails the test on any line that is not a HELP, TYPE or sample line of the text format.
Exposition parse_exposition(const std::string& text) {
  static const std::regex help(R"re(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+)re");
  static const std::regex type(R"re(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))re");
  static const std::regex sample(R"re(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+))re");
  static const std::regex label(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$))re");
  Exposition exposition;
  std::set<std::string> helped;
  std::istringstream lines(text);
  std::string line;
  REQUIRE(text.ends_with("\n"));
  while (std::getline(lines, line)) {
    CAPTURE(line);
    std::smatch match;
    if (std::regex_match(line, match, help)) {
      CHECK(helped.insert(match[1]).second);
    } else if (std::regex_match(line, match, type)) {
      CHECK(helped.count(match[1]) == 1);  // HELP first, as the exposition order convention
      CHECK(exposition.types.emplace(match[1], match[2]).second);
    } else if (std::regex_match(line, match, sample)) {
      Sample parsed{match[1], {}, 0};
      const std::string labels = match[3];
      size_t consumed = 0;
      for (std::sregex_iterator it(labels.begin(), labels.end(), label), end; it != end; ++it) {
        REQUIRE(it->position() == static_cast<std::ptrdiff_t>(consumed));  // no junk between labels
        parsed.labels[(*it)[1]] = unescape((*it)[2]);
        consumed += it->length();
      }
      REQUIRE(consumed == labels.size());
      char* parse_end = nullptr;
      const std::string value = match[4];
      parsed.value = std::strtod(value.c_str(), &parse_end);
      REQUIRE(parse_end == value.c_str() + value.size());
      REQUIRE(exposition.types.count(family_of(parsed.name, exposition.types)) == 1);  // declared before use
      exposition.samples.push_back(parsed);
    } else {
      FAIL("not a line of the text format");
    }
  }
  return exposition;
}

// The buckets of one histogram series are cumulative, end in +Inf == _count, and match `values`.
void check_histogram(const Exposition& exposition, const std::string& name, std::map<std::string, std::string> labels,
                     const std::vector<double>& bounds, const std::vector<double>& values) {
  CAPTURE(name);
  const auto buckets = exposition.find(name + "_bucket", labels);
  REQUIRE(buckets.size() == bounds.size() + 1);
  for (size_t i = 0; i < bounds.size(); ++i) {
    CAPTURE(bounds[i]);
    CHECK(std::stod(buckets[i].labels.at("le")) == bounds[i]);
    const auto expected = std::count_if(values.begin(), values.end(), [&](double v) { return v <= bounds[i]; });
    CHECK(buckets[i].value == static_cast<double>(expected));
  }
  CHECK(buckets.back().labels.at("le") == "+Inf");
  CHECK(buckets.back().value == static_cast<double>(values.size()));
  CHECK(exposition.value(name + "_count", labels) == static_cast<double>(values.size()));
  double sum = 0;
  for (const double v : values) sum += v;
  CHECK(std::abs(exposition.value(name + "_sum", labels) - sum) <= 1e-12 * sum);
}

// Durations spread over the buckets on a log scale, plus some exactly on a bound (buckets are inclusive).
std::vector<double> random_durations(std::mt19937_64& generator, const std::vector<double>& bounds, int n) {
  std::uniform_real_distribution<double> log10_seconds(-3.5, std::log10(bounds.back()) + 0.5);
  std::vector<double> values;
  for (int i = 0; i < n; ++i) values.push_back(std::pow(10.0, log10_seconds(generator)));
  for (int i = 0; i < 3; ++i) values.push_back(bounds[generator() % bounds.size()]);
  return values;
}

}  // namespace

TEST_CASE("metrics render as the Prometheus text format with exact counts", "[integration][metrics]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 generator(rng.seed);
  ServerMetrics metrics;

  const std::map<std::string, int> outcomes{
      {"ok", 1 + int(generator() % 20)}, {"cancelled", 1 + int(generator() % 5)}, {"odd \"label\"\\\n", 2}};
  for (const auto& [outcome, n] : outcomes)
    for (int i = 0; i < n; ++i) metrics.request_finished(outcome);
  const auto denoise = random_durations(generator, ServerMetrics::phase_buckets(), 20 + int(generator() % 30));
  const auto decode = random_durations(generator, ServerMetrics::phase_buckets(), 5);
  const auto steps = random_durations(generator, ServerMetrics::step_buckets(), 50 + int(generator() % 50));
  for (const double v : denoise) metrics.observe_phase("denoise", v);
  for (const double v : decode) metrics.observe_phase("decode", v);
  for (const double v : steps) metrics.observe_step(v);
  const int depth = int(generator() % 9);
  metrics.set_queue_depth(depth);
  const uint64_t total = (uint64_t(1) << 30) * (1 + generator() % 80);
  const uint64_t used = generator() % total;
  metrics.set_gpu_memory(used, total);

  const std::string text = metrics.render();
  CAPTURE(text);
  const Exposition exposition = parse_exposition(text);
  CHECK(exposition.types == std::map<std::string, std::string>{{"sagevid_requests_total", "counter"},
                                                               {"sagevid_queue_depth", "gauge"},
                                                               {"sagevid_phase_seconds", "histogram"},
                                                               {"sagevid_denoise_step_seconds", "histogram"},
                                                               {"sagevid_gpu_memory_used_bytes", "gauge"},
                                                               {"sagevid_gpu_memory_total_bytes", "gauge"}});
  CHECK(exposition.find("sagevid_requests_total").size() == outcomes.size());
  for (const auto& [outcome, n] : outcomes)
    CHECK(exposition.value("sagevid_requests_total", {{"outcome", outcome}}) == n);
  CHECK(exposition.value("sagevid_queue_depth") == depth);
  CHECK(exposition.value("sagevid_gpu_memory_used_bytes") == static_cast<double>(used));
  CHECK(exposition.value("sagevid_gpu_memory_total_bytes") == static_cast<double>(total));
  check_histogram(exposition, "sagevid_phase_seconds", {{"phase", "denoise"}}, ServerMetrics::phase_buckets(), denoise);
  check_histogram(exposition, "sagevid_phase_seconds", {{"phase", "decode"}}, ServerMetrics::phase_buckets(), decode);
  check_histogram(exposition, "sagevid_denoise_step_seconds", {}, ServerMetrics::step_buckets(), steps);
  CHECK(exposition.find("sagevid_phase_seconds_count").size() == 2);  // no phase that was never observed
}

TEST_CASE("fresh metrics render every family with zero values", "[integration][metrics]") {
  const Exposition exposition = parse_exposition(ServerMetrics().render());
  CHECK(exposition.types.size() == 6);
  CHECK(exposition.find("sagevid_requests_total").empty());
  CHECK(exposition.value("sagevid_queue_depth") == 0);
  check_histogram(exposition, "sagevid_denoise_step_seconds", {}, ServerMetrics::step_buckets(), {});
}

TEST_CASE("metrics reject impossible values, naming them", "[integration][metrics]") {
  ServerMetrics metrics;
  REQUIRE_THROWS_WITH(metrics.observe_step(-0.5), ContainsSubstring("observe_step: seconds must be finite and >= 0"));
  REQUIRE_THROWS_WITH(metrics.observe_phase("decode", std::nan("")), ContainsSubstring("observe_phase(decode)"));
  REQUIRE_THROWS_WITH(metrics.observe_phase("", 1.0), ContainsSubstring("phase must not be empty"));
  REQUIRE_THROWS_WITH(metrics.request_finished(""), ContainsSubstring("outcome must not be empty"));
  REQUIRE_THROWS_WITH(metrics.set_queue_depth(-1), ContainsSubstring("depth must be >= 0, got -1"));
  REQUIRE_THROWS_WITH(metrics.set_gpu_memory(10, 9), ContainsSubstring("used (10) exceeds total (9)"));
  REQUIRE_THROWS_WITH(sagevid::Histogram({1.0, 0.5}), ContainsSubstring("strictly increasing"));
  // Nothing was counted by the rejected calls.
  const Exposition exposition = parse_exposition(metrics.render());
  CHECK(exposition.value("sagevid_denoise_step_seconds_count") == 0);
  CHECK(exposition.find("sagevid_phase_seconds_count").empty());
}

TEST_CASE("GET /metrics on an ephemeral port serves the rendered metrics", "[integration][metrics]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  ServerMetrics metrics;
  const int finished = 1 + int(rng.seed % 50);
  for (int i = 0; i < finished; ++i) metrics.request_finished("ok");
  int port = 0;
  {
    const MetricsHttpServer server("127.0.0.1", 0, metrics);
    port = server.port();
    REQUIRE(port > 0);
    auto response = sagevid::test::http_get(port, "/metrics");
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->content_type.starts_with("text/plain; version=0.0.4"));
    CHECK(response->body == metrics.render());
    CHECK(parse_exposition(response->body).value("sagevid_requests_total", {{"outcome", "ok"}}) == finished);

    metrics.set_queue_depth(3);  // a later scrape sees the update
    response = sagevid::test::http_get(port, "/metrics");
    REQUIRE(response);
    CHECK(parse_exposition(response->body).value("sagevid_queue_depth") == 3);

    response = sagevid::test::http_get(port, "/elsewhere");
    REQUIRE(response);
    CHECK(response->status == 404);

    REQUIRE_THROWS_WITH(MetricsHttpServer("127.0.0.1", port, metrics),
                        ContainsSubstring("metrics: cannot listen on 127.0.0.1:" + std::to_string(port)));
  }
  // Destroyed: the port is closed.
  CHECK_FALSE(sagevid::test::http_get(port, "/metrics"));
  REQUIRE_THROWS_WITH(MetricsHttpServer("127.0.0.1", 65536, metrics), ContainsSubstring("port must be in [0, 65535]"));
}

TEST_CASE("concurrent updates are counted exactly while scrapes run", "[integration][metrics]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  ServerMetrics metrics;
  const int threads = 8;
  const int per_thread = 500 + int(rng.seed % 500);
  std::atomic<bool> done = false;
  std::vector<std::string> scrapes;  // parsed later: Catch assertions are not thread-safe
  std::thread scraper([&] {
    while (!done)
      if (scrapes.size() < 200) scrapes.push_back(metrics.render());
      else std::this_thread::yield();
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        metrics.request_finished(t % 2 ? "ok" : "cancelled");
        metrics.observe_step(0.001 * (i % 7));
        metrics.observe_phase("denoise", 1.0);
        metrics.set_queue_depth(i % 4);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  done = true;
  scraper.join();

  // Scrapes taken mid-update are well-formed and never see a counter go backwards.
  double previous_steps = 0;
  for (const std::string& scrape : scrapes) {
    const double steps = parse_exposition(scrape).value("sagevid_denoise_step_seconds_count");
    CHECK(steps >= previous_steps);
    previous_steps = steps;
  }
  const Exposition exposition = parse_exposition(metrics.render());
  const double half = threads / 2 * per_thread;
  CHECK(exposition.value("sagevid_requests_total", {{"outcome", "ok"}}) == half);
  CHECK(exposition.value("sagevid_requests_total", {{"outcome", "cancelled"}}) == half);
  CHECK(exposition.value("sagevid_denoise_step_seconds_count") == threads * per_thread);
  CHECK(exposition.value("sagevid_phase_seconds_count", {{"phase", "denoise"}}) == threads * per_thread);
  CHECK(exposition.value("sagevid_phase_seconds_sum", {{"phase", "denoise"}}) == threads * per_thread);
  CHECK(exposition.value("sagevid_queue_depth") == (per_thread - 1) % 4);
}

TEST_CASE("slow-header connections do not blind the scrape", "[integration][metrics]") {
  using namespace std::chrono_literals;
  ServerMetrics metrics;
  const MetricsHttpServer server("127.0.0.1", 0, metrics);
  // Each sends the start of a request, then one more header byte every 200 ms: never finished, never quiet
  // long enough for a read timeout. Bounded: they stop when told, or after 20 s.
  constexpr int kSlowClients = 8;
  std::atomic<bool> stop = false;
  std::atomic<int> started = 0;
  std::vector<std::thread> slow_clients;
  for (int i = 0; i < kSlowClients; ++i) {
    slow_clients.emplace_back([&] {
      const int fd = sagevid::test::detail::connect_loopback(server.port());
      const std::string partial = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
      if (fd >= 0) ::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
      ++started;
      for (int tick = 0; fd >= 0 && !stop && tick < 100; ++tick) {
        std::this_thread::sleep_for(200ms);
        ::send(fd, "x", 1, MSG_NOSIGNAL);
      }
      if (fd >= 0) ::close(fd);
    });
  }
  while (started < kSlowClients) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(500ms);  // the server has taken them on
  const auto response = sagevid::test::http_get(server.port(), "/metrics");  // gives up after 5 s
  stop = true;
  for (auto& client : slow_clients) client.join();
  REQUIRE(response);
  CHECK(response->status == 200);
  CHECK(response->body == metrics.render());
}

TEST_CASE("GET /metrics over TLS needs a listed bearer token, and a client CA requires client certificates",
          "[integration][metrics]") {
  using sagevid::test::GetOptions;
  using sagevid::test::TlsClientFiles;
  const sagevid::test::TestPki pki;
  ServerMetrics metrics;
  metrics.request_finished("ok");
  const auto tokens = sagevid::BearerTokens::load({pki.token_file, ""});
  const MetricsHttpServer server("127.0.0.1", 0, metrics, {pki.file("server.pem"), pki.file("server.key"), {}}, tokens);
  const TlsClientFiles trusting{pki.file("ca.pem")};
  for (const std::string& token : pki.tokens) {
    const auto response = sagevid::test::http_get(server.port(), "/metrics", {"Bearer " + token, trusting});
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->body == metrics.render());
  }
  for (const std::string& wrong : {std::string(), std::string("Bearer "), "Bearer " + pki.tokens[0] + "x",
                                   pki.tokens[0], "Basic " + pki.tokens[1]}) {
    CAPTURE(wrong);
    for (const char* path : {"/metrics", "/elsewhere"}) {
      const auto response = sagevid::test::http_get(server.port(), path, {wrong, trusting});
      REQUIRE(response);
      CHECK(response->status == 401);
      CHECK(response->body.find("sagevid_") == std::string::npos);
    }
  }
  const std::string authorization = "Bearer " + pki.tokens[0];
  CHECK_FALSE(sagevid::test::http_get(server.port(), "/metrics", {authorization}));  // plaintext
  CHECK_FALSE(
      sagevid::test::http_get(server.port(), "/metrics", {authorization, TlsClientFiles{pki.file("other-ca.pem")}}));

  const MetricsHttpServer strict("127.0.0.1", 0, metrics,
                                 {pki.file("server.pem"), pki.file("server.key"), pki.file("ca.pem")}, tokens);
  CHECK_FALSE(sagevid::test::http_get(strict.port(), "/metrics", {authorization, trusting}));
  const auto response = sagevid::test::http_get(
      strict.port(), "/metrics",
      {authorization, TlsClientFiles{pki.file("ca.pem"), pki.file("client.pem"), pki.file("client.key")}});
  REQUIRE(response);
  CHECK(response->status == 200);
}
