#pragma once
// Throwaway TLS material for the security tests, made at test time with the openssl command line in a fresh
// folder: a CA, a server certificate for 127.0.0.1 and localhost and a client certificate, both signed by
// the CA; a second CA that signed neither; and a token file with fresh random tokens.
#include "catch.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace sagevid::test {

class TestPki {
 public:
  TestPki() {
    std::filesystem::create_directories(dir);
    make_ca("ca");
    make_ca("other-ca");
    make_signed("server", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    make_signed("client", "extendedKeyUsage=clientAuth");
    std::random_device entropy;
    std::ofstream file(token_file);
    file << "# accepted tokens\n\n";
    for (int i = 0; i < 2; ++i) {
      tokens.push_back("tok-" + std::to_string(entropy()) + std::to_string(entropy()));
      file << "  " << tokens.back() << "  \n";
    }
  }
  ~TestPki() { std::filesystem::remove_all(dir); }
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  std::filesystem::path file(const std::string& name) const { return dir / name; }
  std::string text(const std::string& name) const {
    std::ifstream in(file(name));
    return {std::istreambuf_iterator<char>(in), {}};
  }
  // --set overrides that turn on TLS (and with `tokens`, the token check) in a server config.
  std::vector<std::string> server_overrides(bool require_client_cert, bool tokens) const {
    std::vector<std::string> overrides{"server.tls.cert_file=" + file("server.pem").string(),
                                       "server.tls.key_file=" + file("server.key").string()};
    if (require_client_cert) overrides.push_back("server.tls.client_ca_file=" + file("ca.pem").string());
    if (tokens) overrides.push_back("server.auth.token_file=" + token_file.string());
    return overrides;
  }

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sagevid-pki-" + std::to_string(std::random_device{}()));
  const std::filesystem::path token_file = dir / "tokens";
  std::vector<std::string> tokens;

 private:
  void openssl(const std::string& arguments) const {
    const std::string command = "openssl " + arguments + " >>" + (dir / "openssl.log").string() + " 2>&1";
    INFO(command);
    REQUIRE(std::system(command.c_str()) == 0);
  }
  static std::string new_key(const std::filesystem::path& key) {
    return "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc -keyout " + key.string();
  }
  void make_ca(const std::string& name) const {
    openssl("req -x509 " + new_key(file(name + ".key")) + " -out " + file(name + ".pem").string() +
            " -days 2 -subj /CN=sagevid-test-" + name);
  }
  void make_signed(const std::string& name, const std::string& extension) const {
    std::ofstream(file(name + ".ext")) << extension << "\n";
    openssl("req " + new_key(file(name + ".key")) + " -out " + file(name + ".csr").string() + " -subj /CN=" + name);
    openssl("x509 -req -in " + file(name + ".csr").string() + " -CA " + file("ca.pem").string() + " -CAkey " +
            file("ca.key").string() + " -CAcreateserial -days 2 -out " + file(name + ".pem").string() + " -extfile " +
            file(name + ".ext").string());
  }
};

}  // namespace sagevid::test
