package dev.sluice.server.redis;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real {@code redis-server} process on a loopback port, for tests.
 *
 * <p>The binary is the first executable {@code redis-server} on {@code PATH}, else the Linux
 * binary shipped inside {@code com.github.codemonstur:embedded-redis}, extracted once per JVM.
 * We start it ourselves rather than through embedded-redis's wrapper so the arguments are ours
 * and {@link #kill()} is a real SIGKILL: tests of the Redis engine need to lose the server
 * abruptly, not only shut it down politely.
 *
 * <p>Each instance owns a temp directory (Redis's {@code --dir}, and {@code redis.log} with the
 * server's output); nothing is persisted ({@code --save ""}, {@code --appendonly no}, unless the
 * start arguments say {@code --appendonly yes}), and {@link #restart()} always comes back empty;
 * {@link #restartFromDisk()} keeps the directory (an AOF restart). Instances still running when the JVM exits are
 * killed by a shutdown hook, so a forgotten {@link #close()} does not leak a server.
 *
 * <pre>{@code
 * try (RedisProcess redis = RedisProcess.start()) {
 *   RedisClient client = RedisClient.create(redis.uri());
 *   ...
 *   redis.kill();      // the store is gone: connections refused
 *   redis.restart();   // back on the same port, empty
 * }
 * }</pre>
 */
public final class RedisProcess implements AutoCloseable {

  private static final String HOST = "127.0.0.1";
  private static final Duration READY_TIMEOUT = Duration.ofSeconds(10);
  private static final Duration POLL_INTERVAL = Duration.ofMillis(20);
  private static final Duration KILL_TIMEOUT = Duration.ofSeconds(10);
  private static final int START_ATTEMPTS = 5;
  private static final int LOG_TAIL_LINES = 30;

  private static final Set<Process> LIVE = ConcurrentHashMap.newKeySet();

  static {
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(() -> LIVE.forEach(Process::destroyForcibly), "redis-process-reaper"));
  }

  private final Path dir;
  private final Path log;
  private final List<String> extraArgs;
  private Path configFile; // first argument when set (a sentinel needs a writable config file)
  private int port;
  private Process process;
  private boolean closed;

  private RedisProcess(Path dir, List<String> extraArgs) {
    this.dir = dir;
    this.extraArgs = extraArgs;
    this.log = dir.resolve("redis.log");
  }

  /**
   * Starts a server on a free loopback port and returns once it answers {@code PING}.
   *
   * @throws IllegalStateException if it does not come up within 10 s (the message carries the
   *     tail of its log)
   * @throws InterruptedException if interrupted while waiting for it
   */
  public static RedisProcess start() throws InterruptedException {
    return start(new String[0]);
  }

  /**
   * Like {@link #start()}, with more {@code redis-server} arguments, e.g. {@code
   * "--cluster-enabled", "yes"} (a cluster node also binds port + 10000, so its port stays below
   * 55536).
   */
  public static RedisProcess start(String... extraArgs) throws InterruptedException {
    String binary = binary();
    boolean cluster = List.of(extraArgs).contains("--cluster-enabled");
    Path dir;
    try {
      dir = Files.createTempDirectory("sluice-redis-");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    RedisProcess redis = new RedisProcess(dir, List.of(extraArgs));
    try {
      // The free port is only free until someone else binds it; on that race, take another.
      for (int attempt = 1; ; attempt++) {
        int port = freePort();
        while (cluster && port > 55535) {
          port = freePort();
        }
        try {
          redis.launch(binary, port);
          return redis;
        } catch (PortTakenException e) {
          if (attempt == START_ATTEMPTS) {
            throw new IllegalStateException(
                "redis-server could not bind a free port in " + START_ATTEMPTS + " attempts", e);
          }
        }
      }
    } catch (RuntimeException | InterruptedException | Error e) {
      redis.close();
      throw e;
    }
  }

  /** The absolute path of the {@code redis-server} binary every instance runs. */
  public static String binary() {
    return Binary.PATH.toString();
  }

  /** The port this server listens on; stays the same across {@link #restart()}. */
  public synchronized int port() {
    return port;
  }

  /** {@code redis://127.0.0.1:<port>}, for {@code RedisClient.create}. */
  public synchronized String uri() {
    return "redis://" + HOST + ":" + port;
  }

  /** The directory this instance runs in ({@code --dir}, and {@code redis.log}). */
  public Path dir() {
    return dir;
  }

  /**
   * Kills the server with SIGKILL and waits until it is gone, so its port refuses connections.
   * Does nothing if it is not running.
   */
  public synchronized void kill() {
    if (process == null) {
      return;
    }
    Process p = process;
    process = null;
    p.destroyForcibly();
    boolean interrupted = false;
    try {
      long deadline = System.nanoTime() + KILL_TIMEOUT.toNanos();
      while (true) {
        try {
          if (!p.waitFor(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
            throw new IllegalStateException(
                "redis-server pid " + p.pid() + " still running " + KILL_TIMEOUT + " after SIGKILL");
          }
          break;
        } catch (InterruptedException e) {
          interrupted = true; // a SIGKILLed process exits promptly; finish, then re-assert
        }
      }
    } finally {
      LIVE.remove(p);
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /**
   * Kills the server if it runs, then starts it again on the same port with an empty dataset,
   * returning once it answers {@code PING}.
   *
   * @throws IllegalStateException if closed, or if it does not come up (for instance because
   *     another process took the port meanwhile)
   * @throws InterruptedException if interrupted while waiting for it
   */
  public synchronized void restart() throws InterruptedException {
    if (closed) {
      throw new IllegalStateException("closed");
    }
    kill();
    clearData();
    relaunch();
  }

  /**
   * Kills the server if it runs, then starts it again on the same port keeping its directory:
   * with {@code "--appendonly", "yes"} among the start arguments it comes back from its AOF.
   */
  public synchronized void restartFromDisk() throws InterruptedException {
    if (closed) {
      throw new IllegalStateException("closed");
    }
    kill();
    relaunch();
  }

  /** Starts the killed server again on its port, with its directory as it is. */
  public synchronized void relaunch() throws InterruptedException {
    if (closed) {
      throw new IllegalStateException("closed");
    }
    if (process != null) {
      throw new IllegalStateException("still running: kill() first");
    }
    try {
      launch(binary(), port);
    } catch (PortTakenException e) {
      throw new IllegalStateException("port " + port + " was taken while redis-server was down", e);
    }
  }

  /**
   * Stalls the server: {@code CLIENT PAUSE <millis> ALL}, so every client's commands wait
   * (Redis 6.2 and later) until the pause ends on its own.
   */
  public void pause(Duration d) {
    String reply = command(port(), "CLIENT PAUSE " + d.toMillis() + " ALL");
    if (!reply.equals("+OK")) {
      throw new IllegalStateException("CLIENT PAUSE answered " + reply);
    }
  }

  /** Whether the process runs (not killed). */
  public synchronized boolean running() {
    return process != null && process.isAlive();
  }

  /**
   * Sends one inline command over a raw connection and returns the first line of its reply,
   * without CRLF ({@code +OK}, {@code -ERR ...}, {@code :1}, {@code $5} for a bulk string).
   */
  public String command(String inline) {
    return command(port(), inline);
  }

  /**
   * Starts a Sentinel from the same binary ({@code redis-server <conf> --sentinel}) watching
   * the primary {@code masterName} at {@code masterPort}: quorum {@code quorum}, a primary is
   * down after {@code downAfter} and a failover may take {@code failoverTimeout}.
   */
  public static RedisProcess startSentinel(
      String masterName, int masterPort, int quorum, Duration downAfter, Duration failoverTimeout)
      throws InterruptedException {
    Path dir;
    try {
      dir = Files.createTempDirectory("sluice-sentinel-");
      Path conf = dir.resolve("sentinel.conf");
      Files.writeString(conf, String.join("\n",
          "sentinel monitor " + masterName + " " + HOST + " " + masterPort + " " + quorum,
          "sentinel down-after-milliseconds " + masterName + " " + downAfter.toMillis(),
          "sentinel failover-timeout " + masterName + " " + failoverTimeout.toMillis(),
          "sentinel parallel-syncs " + masterName + " 1",
          ""));
      RedisProcess sentinel = new RedisProcess(dir, List.of("--sentinel"));
      sentinel.configFile = conf;
      try {
        for (int attempt = 1; ; attempt++) {
          try {
            sentinel.launch(binary(), freePort());
            return sentinel;
          } catch (PortTakenException e) {
            if (attempt == START_ATTEMPTS) {
              throw new IllegalStateException("a sentinel could not bind a free port", e);
            }
          }
        }
      } catch (RuntimeException | InterruptedException | Error e) {
        sentinel.close();
        throw e;
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Empties every database, over a raw connection. */
  public void flushAll() {
    String reply = command(port(), "FLUSHALL");
    if (!reply.equals("+OK")) {
      throw new IllegalStateException("FLUSHALL answered " + reply);
    }
  }

  /** Kills the server and deletes its directory. Idempotent; throws nothing. */
  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    kill();
    deleteRecursively(dir);
  }

  @Override
  public synchronized String toString() {
    return "RedisProcess[" + uri() + ", " + (process != null ? "running" : "down") + ", " + dir + "]";
  }

  private void launch(String binary, int port) throws InterruptedException {
    this.port = port;
    long logMark = logSize();
    List<String> command = new ArrayList<>(List.of(binary));
    if (configFile != null) {
      command.add(configFile.toString());
    }
    command.addAll(
        List.of(
            "--port", Integer.toString(port),
            "--bind", HOST,
            "--protected-mode", "no",
            "--dir", dir.toString()));
    if (configFile == null) {
      command.addAll(List.of("--save", "", "--appendonly", "no")); // later arguments may override
    }
    command.addAll(extraArgs);
    ProcessBuilder builder =
        new ProcessBuilder(command)
            .directory(dir.toFile())
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()));
    Process p = startProcess(builder);
    process = p;
    LIVE.add(p);

    long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
    while (true) {
      if (!p.isAlive()) {
        kill(); // reaps it and forgets it
        String tail = logTail(logMark);
        if (tail.contains("Address already in use")) {
          throw new PortTakenException(port, tail);
        }
        throw new IllegalStateException(
            "redis-server exited with " + p.exitValue() + " on port " + port + "; log " + log
                + ":\n" + tail);
      }
      if (answersPing(port)) {
        return;
      }
      if (System.nanoTime() - deadline > 0) {
        kill();
        throw new IllegalStateException(
            "redis-server did not answer PING on port " + port + " within " + READY_TIMEOUT
                + "; log " + log + ":\n" + logTail(logMark));
      }
      Thread.sleep(POLL_INTERVAL.toMillis());
    }
  }

  /**
   * Starts the process, retrying ETXTBSY: a just-written executable can still be open for
   * writing in a child some other thread of this JVM forked meanwhile (JDK-8068370).
   */
  private static Process startProcess(ProcessBuilder builder) throws InterruptedException {
    for (int attempt = 1; ; attempt++) {
      try {
        return builder.start();
      } catch (IOException e) {
        if (attempt == START_ATTEMPTS || !String.valueOf(e.getMessage()).contains("error=26")) {
          throw new UncheckedIOException("cannot start " + builder.command(), e);
        }
        Thread.sleep(POLL_INTERVAL.toMillis());
      }
    }
  }

  private void clearData() {
    try (Stream<Path> files = Files.list(dir)) {
      for (Path file : (Iterable<Path>) files::iterator) {
        if (!file.equals(log)) {
          deleteRecursively(file);
        }
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static boolean answersPing(int port) {
    try {
      return command(port, "PING").equals("+PONG");
    } catch (UncheckedIOException notYet) {
      return false;
    }
  }

  /** Sends one inline command and returns the first line of the reply, without CRLF. */
  private static String command(int port, String inline) {
    try (Socket socket = new Socket()) {
      socket.connect(new InetSocketAddress(InetAddress.getByName(HOST), port), 1_000);
      socket.setSoTimeout(2_000);
      socket.getOutputStream().write((inline + "\r\n").getBytes(StandardCharsets.US_ASCII));
      socket.getOutputStream().flush();
      InputStream in = socket.getInputStream();
      StringBuilder line = new StringBuilder();
      for (int c = in.read(); c != -1 && c != '\n'; c = in.read()) {
        if (c != '\r') {
          line.append((char) c);
        }
      }
      return line.toString();
    } catch (IOException e) {
      throw new UncheckedIOException(inline + " to " + HOST + ":" + port + " failed", e);
    }
  }

  private static int freePort() {
    try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getByName(HOST))) {
      return socket.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private long logSize() {
    try {
      return Files.exists(log) ? Files.size(log) : 0;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The last lines the current run wrote to the log (from {@code mark} on). */
  private String logTail(long mark) {
    try {
      byte[] all = Files.exists(log) ? Files.readAllBytes(log) : new byte[0];
      int from = (int) Math.min(mark, all.length);
      String text = new String(all, from, all.length - from, StandardCharsets.UTF_8);
      List<String> lines = text.lines().toList();
      List<String> tail = lines.subList(Math.max(0, lines.size() - LOG_TAIL_LINES), lines.size());
      return tail.isEmpty() ? "(empty)" : String.join("\n", tail);
    } catch (IOException e) {
      return "(log unreadable: " + e + ")";
    }
  }

  private static void deleteRecursively(Path root) {
    if (!Files.exists(root)) {
      return;
    }
    try (Stream<Path> paths = Files.walk(root)) {
      List<Path> all = new ArrayList<>(paths.toList());
      all.sort(Comparator.reverseOrder());
      for (Path path : all) {
        Files.deleteIfExists(path);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot delete " + root, e);
    }
  }

  /** The server exited because its port was taken; {@link #start()} retries on another. */
  private static final class PortTakenException extends IllegalStateException {
    PortTakenException(int port, String logTail) {
      super("port " + port + " already in use:\n" + logTail);
    }
  }

  /** Resolves (and, for the embedded binary, extracts) the binary once per JVM. */
  private static final class Binary {
    static final Path PATH = resolve();

    private static Path resolve() {
      Path binary;
      String origin;
      Path onPath = findOnPath("redis-server");
      if (onPath != null) {
        binary = onPath;
        origin = "from PATH";
      } else {
        String resource = embeddedResource();
        binary = extract(resource);
        origin = "embedded-redis " + resource;
      }
      System.err.println(
          "RedisProcess: using " + binary + " (" + origin + "): " + version(binary));
      return binary;
    }

    private static Path findOnPath(String name) {
      String path = System.getenv("PATH");
      if (path == null) {
        return null;
      }
      for (String entry : path.split(File.pathSeparator)) {
        if (entry.isEmpty()) {
          continue;
        }
        Path candidate = Path.of(entry, name);
        if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
          return candidate.toAbsolutePath();
        }
      }
      return null;
    }

    /** The binary's name at the root of the embedded-redis jar, for this machine. */
    private static String embeddedResource() {
      String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
      String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
      if (!os.contains("linux")) {
        throw new IllegalStateException(
            "no redis-server on PATH, and only the Linux embedded binaries are used; os.name="
                + os);
      }
      switch (arch) {
        case "amd64":
        case "x86_64":
          return "redis-server-6.2.6-v5-linux-amd64";
        case "aarch64":
        case "arm64":
          return "redis-server-6.2.7-linux-arm64";
        default:
          throw new IllegalStateException(
              "no redis-server on PATH, and embedded-redis has no Linux binary for os.arch="
                  + arch);
      }
    }

    private static Path extract(String resource) {
      try (InputStream in = RedisProcess.class.getClassLoader().getResourceAsStream(resource)) {
        if (in == null) {
          throw new IllegalStateException(
              "no redis-server on PATH, and " + resource + " is not on the test class path"
                  + " (com.github.codemonstur:embedded-redis)");
        }
        Path file = Files.createTempFile("redis-server-", "");
        file.toFile().deleteOnExit();
        Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
        if (!file.toFile().setExecutable(true, true)) {
          throw new IllegalStateException("cannot make " + file + " executable");
        }
        return file;
      } catch (IOException e) {
        throw new UncheckedIOException("cannot extract " + resource, e);
      }
    }

    private static String version(Path binary) {
      try {
        Process p =
            startProcess(new ProcessBuilder(binary.toString(), "--version").redirectErrorStream(true));
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        if (!p.waitFor(10, TimeUnit.SECONDS)) {
          p.destroyForcibly();
        }
        return out;
      } catch (IOException e) {
        throw new UncheckedIOException(binary + " --version failed", e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return "(version unknown: interrupted)";
      }
    }
  }

  /** CLUSTER ADDSLOTS a third of the slots on each master, CLUSTER MEET, wait for state ok. */
  public static void formCluster(List<RedisProcess> masters) {
    List<io.lettuce.core.RedisClient> clients = new java.util.ArrayList<>();
    try {
      List<io.lettuce.core.api.sync.RedisCommands<String, String>> cmds = new java.util.ArrayList<>();
      for (RedisProcess m : masters) {
        io.lettuce.core.RedisClient c = io.lettuce.core.RedisClient.create(io.lettuce.core.RedisURI.create(m.uri()));
        clients.add(c);
        io.lettuce.core.api.StatefulRedisConnection<String, String> conn = c.connect();
        cmds.add(conn.sync());
      }
      int per = 16384 / masters.size();
      for (int i = 0; i < masters.size(); i++) {
        int from = i * per;
        int to = i == masters.size() - 1 ? 16383 : from + per - 1;
        cmds.get(i).clusterAddSlots(java.util.stream.IntStream.rangeClosed(from, to).toArray());
      }
      for (int i = 1; i < masters.size(); i++) {
        cmds.get(0).clusterMeet("127.0.0.1", masters.get(i).port());
      }
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
      while (!cmds.stream().allMatch(c -> c.clusterInfo().contains("cluster_state:ok")
          && c.clusterInfo().contains("cluster_known_nodes:" + masters.size()))) {
        if (System.nanoTime() > deadline) {
          throw new IllegalStateException("the cluster of " + masters + " did not form within 20 s");
        }
        try {
          Thread.sleep(100);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException(e);
        }
      }
    } finally {
      clients.forEach(io.lettuce.core.RedisClient::shutdown);
    }
  }
}
