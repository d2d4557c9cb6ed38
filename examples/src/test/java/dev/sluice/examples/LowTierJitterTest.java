package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.errors.RateLimitException;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import dev.sluice.cli.SluiceCli;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.server.ServerTestHooks;
import dev.sluice.server.SluiceServer;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.ResourceSnapshot;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.PriorityQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Low tiers (issue 17): the official openai-java client against the strict mock, through a
 * coordinator whose limit is exactly the mock's, with 16 callers, each call reaching the mock
 * up to 20 ms after its grant. The limit's {@code --jitter 20ms} must leave no 429 at 3, 60 and
 * 500 RPM, and the mock must see at least the rate the coordinator's {@code limit get} shows as
 * effective; without jitter, the same lateness gets 429s.
 *
 * <p>The coordinator and the mock share one {@link FakeClock}, so lateness is exact and 3 RPM
 * takes no minutes: the test is a discrete-event run. Each caller, once granted, books its call
 * for {@code grant time + delay}; the driver moves the clock to the next booked call or the next
 * coordinator wake-up, whichever comes first, and lets the call go, the clock standing still
 * while it is on the wire. Before each move it waits until the system is quiet: every grant made
 * is booked, no call is on the wire, and every other caller is back in the coordinator's queue.
 * Delays alternate, a burst's worth of calls {@code 20 ms} late then as many on time: the worst
 * case for the mock's bucket, where a late call is followed by a prompt one.
 */
class LowTierJitterTest {

  private static final int CALLERS = 16;
  private static final long LATE_NANOS = Duration.ofMillis(20).toNanos();
  private static final Pattern EFFECTIVE = Pattern.compile("effective ([0-9.]+)/min for jitter");

  @TempDir Path dir;

  @ParameterizedTest(name = "{0} RPM, burst {1}: {2} calls")
  @CsvSource({"3, 1, 5", "60, 1, 20", "500, 4, 64"})
  void callsUpToTheJitterLateAreNeverRefusedAndUseTheRateShown(long rpm, long burst, int calls) throws Exception {
    try (Run run = new Run(dir, rpm, burst, "20ms")) {
      double shown = run.effectivePerMinute();
      Result r = run.calls(calls);
      double bound = shown / rpm;
      System.out.printf("%d RPM, limit %d/min:%d with jitter 20 ms, %d callers: %d calls, %d refused (429),"
              + " utilization %.4f, coordinator's effective rate %s/min (bound %.4f)%n",
          rpm, rpm, burst, CALLERS, r.admitted + r.refused, r.refused, r.utilization(rpm), shown, bound);
      assertThat(r.refused).as("upstream 429s").isZero();
      assertThat(r.utilization(rpm)).as("calls per minute the mock saw, over its limit").isGreaterThanOrEqualTo(bound);
    }
  }

  @Test
  void withoutJitterTheSameLatenessGets429s() throws Exception {
    try (Run run = new Run(dir, 60, 1, "0")) {
      assertThat(run.limitGet).doesNotContain("effective");
      Result r = run.calls(10);
      System.out.printf("60 RPM, limit 60/min:1 without jitter: %d calls, %d refused (429)%n",
          r.admitted + r.refused, r.refused);
      assertThat(r.refused).as("a prompt call right after a late one finds the mock's bucket short").isPositive();
    }
  }

  /** What the mock answered, and when (fake nanoseconds) it admitted the first and last call. */
  static final class Result {
    long admitted;
    long refused;
    long firstAdmitted = -1;
    long lastAdmitted;

    /** Calls the mock admitted per minute between its first and last admission, over the limit. */
    double utilization(long rpm) {
      return (admitted - 1) / ((lastAdmitted - firstAdmitted) / 60e9) / rpm;
    }
  }

  /** One booked call: a caller granted, waiting for the clock to reach {@code at}. */
  private record Booked(long at, long seq, CountDownLatch go) {}

  /** Coordinator, mock and callers on one fake clock. */
  private static final class Run implements AutoCloseable {
    final FakeClock clock = new FakeClock();
    final SluiceServer server;
    final Engine engine;
    final MockOpenAi mock;
    final SluiceClient sluice;
    final OpenAIClient openai;
    final long burst;
    final String limitGet;
    final List<Thread> callers = new ArrayList<>();
    final Result result = new Result();

    // Guarded by this.
    final PriorityQueue<Booked> booked =
        new PriorityQueue<>((a, b) -> a.at != b.at ? Long.compare(a.at, b.at) : Long.compare(a.seq, b.seq));
    long bookings;
    int onTheWire;
    volatile boolean stopping;
    volatile Throwable callerFailure;

    Run(Path dir, long rpm, long burst, String jitter) throws Exception {
      this.burst = burst;
      server = ServerTestHooks.clock(SluiceServer.builder(), clock)
          .host("127.0.0.1").port(0).dataDir(dir.resolve("data")).maxWait(Duration.ofHours(1))
          .build().start();
      engine = ServerTestHooks.engine(server);
      mock = MockOpenAi.builder().rpm(rpm).tpm(100_000_000).burstSeconds(1.0)
          .latency(Duration.ZERO, Duration.ZERO).ticker(clock::read).port(0).build().start();
      cli("limit", "set", "tier", "--rate", "requests=" + rpm + "/min:" + burst, "--jitter", jitter);
      limitGet = cli("limit", "get", "tier");
      sluice = SluiceClient.builder().target("127.0.0.1:" + server.port()).defaultTimeout(Duration.ofHours(1)).build();
      openai = OpenAIOkHttpClient.builder().baseUrl(mock.baseUrl()).apiKey("sk-test-shared-key").maxRetries(0).build();
    }

    private String cli(String... args) {
      List<String> argv = new ArrayList<>(List.of(args));
      argv.add("--target=127.0.0.1:" + server.port());
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      ByteArrayOutputStream err = new ByteArrayOutputStream();
      int code = SluiceCli.run(new PrintStream(out, true, StandardCharsets.UTF_8),
          new PrintStream(err, true, StandardCharsets.UTF_8), argv.toArray(String[]::new));
      assertThat(code).as("sluice %s: %s", argv, err.toString(StandardCharsets.UTF_8)).isZero();
      return out.toString(StandardCharsets.UTF_8);
    }

    /** The effective rate {@code limit get} shows, in calls per minute. */
    double effectivePerMinute() {
      Matcher m = EFFECTIVE.matcher(limitGet);
      assertThat(m.find()).as("limit get shows the effective rate:%n%s", limitGet).isTrue();
      return Double.parseDouble(m.group(1));
    }

    /** Runs until {@code n} calls reached the mock; returns what it answered. */
    Result calls(int n) {
      for (int i = 0; i < CALLERS; i++) {
        Thread t = new Thread(this::caller, "caller-" + i);
        t.setDaemon(true);
        callers.add(t);
        t.start();
      }
      for (int done = 0; done < n; done++) {
        Booked next;
        while (true) {
          awaitQuiet();
          long task = clock.nextTaskAt();
          synchronized (this) {
            next = booked.peek();
          }
          if (next != null && next.at <= task) {
            break;
          }
          assertThat(task).as("a coordinator wake-up or a booked call is pending").isLessThan(Long.MAX_VALUE);
          clock.advance(Duration.ofNanos(task - clock.read()));
        }
        clock.advance(Duration.ofNanos(next.at - clock.read()));
        synchronized (this) {
          booked.remove(next);
          onTheWire++;
        }
        next.go.countDown();
        await(() -> {
          synchronized (this) {
            return onTheWire == 0;
          }
        }, "the call to the mock to be answered");
      }
      synchronized (this) {
        return result;
      }
    }

    /** Every grant booked, no call on the wire, every other caller queued at the coordinator. */
    private void awaitQuiet() {
      await(() -> {
        ResourceSnapshot s = engine.stats("tier").join();
        int queued = s.waiting().values().stream().mapToInt(Integer::intValue).sum();
        synchronized (this) {
          return bookings == s.granted() && onTheWire == 0 && queued + booked.size() == CALLERS;
        }
      }, "grants booked and callers queued");
    }

    private void await(BooleanSupplier quiet, String what) {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!quiet.getAsBoolean()) {
        if (callerFailure != null) {
          throw new AssertionError("a caller failed", callerFailure);
        }
        if (System.nanoTime() - deadline > 0) {
          throw new AssertionError("no quiet within 30 s waiting for " + what + "; stats "
              + engine.stats("tier").join() + ", bookings " + bookings + ", booked " + booked.size());
        }
        LockSupport.parkNanos(200_000);
      }
    }

    private void caller() {
      ChatCompletionCreateParams params = ChatCompletionCreateParams.builder()
          .model("gpt-4o-mini").addUserMessage("say hi").maxCompletionTokens(5).build();
      while (!stopping) {
        try (Permit p = sluice.acquire("tier", Load.of("requests", 1))) {
          Booked b;
          synchronized (this) {
            long seq = bookings++;
            // A burst's worth late, then as many on time.
            long delay = (seq / burst) % 2 == 0 ? LATE_NANOS : 0;
            b = new Booked(clock.read() + delay, seq, new CountDownLatch(1));
            booked.add(b);
          }
          b.go.await();
          boolean admitted;
          try {
            openai.chat().completions().create(params);
            admitted = true;
          } catch (RateLimitException e) {
            admitted = false;
          }
          synchronized (this) {
            if (admitted) {
              result.admitted++;
              if (result.firstAdmitted < 0) {
                result.firstAdmitted = b.at;
              }
              result.lastAdmitted = b.at;
            } else {
              result.refused++;
            }
            onTheWire--;
          }
        } catch (InterruptedException e) {
          return;
        } catch (RuntimeException e) {
          if (!stopping) {
            callerFailure = e;
          }
          return;
        }
      }
    }

    @Override
    public void close() {
      stopping = true;
      callers.forEach(Thread::interrupt);
      sluice.close();
      openai.close();
      mock.close();
      server.close();
    }
  }
}
