package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import dev.sluice.cli.SluiceCli;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** What the tests of the non-Java clients share: the real CLI in-process, and a client's own test run. */
final class ClientProcesses {

  private ClientProcesses() {}

  record Ran(int exit, String output) {}

  /** Runs the real CLI in-process against the coordinator; returns what it printed on stdout. */
  static String cli(String target, String apiKey, String... command) {
    List<String> args = new ArrayList<>(List.of(command));
    args.addAll(List.of("--target", target));
    if (apiKey != null) {
      args.addAll(List.of("--api-key", apiKey));
    }
    var out = new ByteArrayOutputStream();
    var err = new ByteArrayOutputStream();
    int code = SluiceCli.run(new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8), args.toArray(String[]::new));
    assertThat(code).as("sluice %s: %s", command[0], err.toString(StandardCharsets.UTF_8)).isZero();
    return out.toString(StandardCharsets.UTF_8).trim();
  }

  /**
   * Makes {@code pool} a pool of {@code members} through the admin service's {@code SetLimit}
   * with members, over a real channel with {@code apiKey} (null: an open coordinator).
   */
  static void pool(String target, String apiKey, String pool, String... members) {
    io.grpc.ManagedChannel channel = io.grpc.ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    try {
      io.grpc.Metadata headers = new io.grpc.Metadata();
      if (apiKey != null) {
        headers.put(io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER),
            "Bearer " + apiKey);
      }
      dev.sluice.proto.v1.AdminGrpc.newBlockingStub(channel)
          .withInterceptors(io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(headers))
          .withDeadlineAfter(30, TimeUnit.SECONDS)
          .setLimit(dev.sluice.proto.v1.SetLimitRequest.newBuilder().setLimit(
              dev.sluice.proto.v1.Limit.newBuilder().setResource(pool).addAllMembers(List.of(members))).build());
    } finally {
      channel.shutdownNow();
    }
  }

  /**
   * Runs a command in {@code dir} with only the {@code SLUICE_*} variables of {@code env}, its
   * output echoed to the test log with {@code tag}; returns its exit code and output.
   */
  static Ran run(String tag, Path dir, Duration timeout, Map<String, String> env, String... command) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true);
    pb.environment().keySet().removeIf(k -> k.startsWith("SLUICE_")); // only what the test sets
    pb.environment().putAll(env);
    System.out.println("[" + tag + "] $ " + String.join(" ", command));
    Process p = pb.start();
    StringBuffer output = new StringBuffer();
    Thread echo = new Thread(() -> {
      try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
        for (String line; (line = in.readLine()) != null; ) {
          System.out.println("[" + tag + "] " + line);
          output.append(line).append('\n');
        }
      } catch (IOException e) {
        // the process is gone; its exit code tells the rest
      }
    }, tag + "-output");
    echo.setDaemon(true);
    echo.start();
    if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
      fail(String.join(" ", command) + " did not finish within " + timeout);
    }
    echo.join(5_000);
    return new Ran(p.exitValue(), output.toString());
  }

  private static final String PYTHON_HINT = "install Debian's packages (`sudo apt-get install -y python3"
      + " python3-httpx python3-pytest`), or run `bash .ci/run`, which installs them";

  /**
   * Debian's /usr/bin/python3, else a python3 on the PATH, that can import httpx (and pytest when
   * {@code pytest}); fails the test {@code tag} naming what was tried and how to install them.
   */
  static String python(String tag, boolean pytest) throws Exception {
    String modules = pytest ? "httpx, pytest" : "httpx";
    List<String> tried = new ArrayList<>();
    for (String candidate : List.of("/usr/bin/python3", "python3")) {
      try {
        Process p = new ProcessBuilder(candidate, "-c", "import sys, " + modules + "; print(sys.version.split()[0],"
            + " 'httpx', httpx.__version__" + (pytest ? ", 'pytest', pytest.__version__" : "") + ")")
            .redirectErrorStream(true).start();
        String said = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        if (p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) {
          System.out.println("[" + tag + "] " + candidate + ": Python " + said);
          return candidate;
        }
        String[] lines = said.split("\n");
        tried.add(candidate + " (" + lines[lines.length - 1] + ")");
      } catch (IOException e) {
        tried.add(candidate + " (not found)");
      }
    }
    fail(tag + " needs a python3 that can import " + modules + "; tried " + String.join(", ", tried) + ": "
        + PYTHON_HINT);
    return null;
  }
}
