package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.ServerSocket;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Command-line mistakes exit 2 with one line; they never reach a server. */
class UsageTest {

  /** Nothing listens here, so a command that got past parsing would fail with exit 1. */
  private static final String NOWHERE = "--target=127.0.0.1:1";

  @ParameterizedTest(name = "{0}")
  @CsvSource(delimiter = '|', value = {
      "limit set openai --rate requests500/min  | missing '=' between the dimension and the amount",
      "limit set openai --rate requests=0/min   | amount must be at least 1, got 0",
      "limit set openai --rate requests=5/week  | unknown period 'week'",
      "limit set openai --rate requests=5/min:x | burst 'x' is not a whole number",
  })
  void badRateExitsTwoWithOneLineShowingTheRightForm(String args, String problem) {
    CliRun run = CliRun.of((args + " " + NOWHERE).split(" "));
    assertThat(run.exit()).isEqualTo(2);
    assertThat(run.out()).isEmpty();
    assertThat(run.err()).hasLineCount(1)
        .startsWith("error: invalid value for --rate: bad rate '")
        .contains(problem)
        .contains("e.g. requests=500/min or tokens=200000/min:4000")
        .contains("(see 'sluice limit set --help')");
  }

  @ParameterizedTest(name = "[{index}] sluice {0}")
  @CsvSource(delimiter = '|', value = {
      "''                                          | missing command: serve, limit, pool, pause, resume, stats, key, buffer or price",
      "limt                                        | Unmatched argument at index 0: 'limt'; did you mean limit?",
      "limit                                       | missing subcommand: set, get, list, delete, apply, export or history",
      "limit get                                   | Missing required parameter: 'NAME'",
      "limit set openai                            | give at least one --rate, a --concurrency cap or a --hold",
      "limit set openai --rate requests=1/s --rate requests=2/s | dimension 'requests' is given twice",
      "limit set openai --concurrency lots         | invalid value for --concurrency: 'lots' is not a long",
      "limit set openai --concurrency -1           | --concurrency must be >= 0",
      "limit set openai --concurrency 5 --lease-ttl 0 | --lease-ttl must be more than 0",
      "limit set openai --concurrency 5 --lease-ttl 30 | '30' has no unit (write 30s or 30ms)",
      "limit list --bogus                          | Unknown option: '--bogus'",
      "pause openai --for soon                     | 'soon' is not a duration",
      "stats --watch --interval 1ms                | --interval must be at least 100ms",
      "serve --port 99999                          | port 99999 is out of range",
      "serve --http-port 70000                     | http port 70000 is out of range: use 0 to 65535, or -1 for no HTTP port",
      "serve --http-port -1 --http-bind 0.0.0.0    | --http-bind needs the HTTP port",
      "serve --max-wait forever                    | 'forever' is not a duration",
      "serve --store http://localhost:6379         | is not a Redis URI: use redis://host:port",
      "serve --store redis://h:1 --node-id a/b     | node id 'a/b' is invalid",
      "serve --metrics-max-resources -1            | metrics max resources -1 is out of range: use 0",
      "serve --metrics-wait-buckets 1s,100ms       | metrics wait buckets: 100ms does not follow 1s: give 1 to 20 increasing",
      "serve --metrics-wait-buckets 1s,soon        | 'soon' is not a duration",
      "serve --max-waiting-per-connection 0        | max waiting per connection 0 is out of range: use 1",
      "serve --tls-cert c.pem                      | --tls-cert and --tls-key go together",
      "serve --buffer-fsync sometimes              | expected one of [always, crash]",
      "serve --buffer-lease 1s                     | buffer lease 1s is out of range: use 2s to 10m",
      "serve --slice openai                        | slice rule 'openai' is not GLOB=HOLD: write e.g. openai-*=50ms",
      "serve --slice openai=5s                     | slice hold of 'openai' '5s' is too long: give a duration from 1ms to 1s",
      "serve --slice open(ai)=20ms                 | must be a resource name or glob of at most 256 characters",
      "serve --buffer-allow 10.0.0.0/33            | --buffer-allow '10.0.0.0/33': the prefix length must be 0 to 32",
      "serve --buffer-deny example.com             | --buffer-deny 'example.com' is not a network",
      "serve --http-max-connections 0              | --http-max-connections 0 is out of range: use 1",
      "serve --http-read-timeout 10ms              | --http-read-timeout 10ms is out of range: use 100ms to 1d",
      "serve --http-max-pipelined -1               | --http-max-pipelined -1 is out of range: use 0 to 1000",
      "key create --role root                      | worker",
  })
  void usageErrorsExitTwoWithOneLine(String args, String message) {
    String[] argv = args.isEmpty() ? new String[0] : args.split(" ");
    if (argv.length > 1 && !argv[0].equals("serve")) {
      argv = append(argv, NOWHERE);
    }
    CliRun run = CliRun.of(argv);
    assertThat(run.exit()).as(run.err()).isEqualTo(2);
    assertThat(run.err()).hasLineCount(1).startsWith("error: ").contains(message).contains("--help')");
    assertThat(run.err()).doesNotContain("Exception").doesNotContain("\tat ");
  }

  @Test
  void helpAndVersionExitZero() {
    CliRun help = CliRun.of("--help");
    assertThat(help.exit()).isZero();
    assertThat(help.out()).contains("Usage: sluice", "serve", "limit", "pause", "resume", "stats");

    CliRun setHelp = CliRun.of("limit", "set", "--help");
    assertThat(setHelp.exit()).isZero();
    assertThat(setHelp.out()).contains("--rate=DIM=AMOUNT/PERIOD[:BURST]", "--target=HOST:PORT",
        "--json");

    CliRun serveHelp = CliRun.of("help", "serve");
    assertThat(serveHelp.exit()).isZero();
    assertThat(serveHelp.out()).contains("SLUICE_PORT", "SLUICE_DATA_DIR", "default 7420");

    CliRun version = CliRun.of("--version");
    assertThat(version.exit()).isZero();
    assertThat(version.out()).startsWith("sluice ");
  }

  @Test
  void unreachableCoordinatorExitsOneWithAHint() throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    String target = "127.0.0.1:" + port;
    CliRun run = CliRun.of("limit", "list", "--target", target);
    assertThat(run.exit()).isEqualTo(1);
    assertThat(run.err()).hasLineCount(1)
        .startsWith("error: UNAVAILABLE: ")
        .endsWith("is the coordinator running at " + target
            + "? start it with `bin/sluice serve` or set --target/SLUICE_TARGET" + System.lineSeparator());
  }

  private static String[] append(String[] a, String s) {
    String[] b = java.util.Arrays.copyOf(a, a.length + 1);
    b[a.length] = s;
    return b;
  }
}
