package dev.sluice.examples;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.ObjectMappers;
import com.openai.core.http.Headers;
import com.openai.core.http.HttpResponseFor;
import com.openai.errors.OpenAIIoException;
import com.openai.errors.OpenAIServiceException;
import com.openai.errors.RateLimitException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.completions.CompletionUsage;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.AcquireTimeoutException;
import dev.sluice.client.Lane;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.examples.Prompts.Prompt;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.ConcurrentHistogram;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * A batch worker: many prompts, N threads, the official {@code openai-java} client, and Sluice
 * in front of every call.
 *
 * <p>With Sluice ({@code --mode sluice}, the default) each call is:
 *
 * <ol>
 *   <li>estimate with jtokkit: prompt tokens + max_tokens (what OpenAI charges at admission);
 *   <li>{@code acquire {requests: 1, tokens: estimate}} — blocks until every worker together is
 *       under the quota;
 *   <li>call with the SDK's own retries <b>off</b> (they would go around the coordinator);
 *   <li>settle with what the upstream really charged — {@code usage.prompt_tokens + max_tokens},
 *       because OpenAI does not refund the unused completion budget; feed the
 *       {@code x-ratelimit-remaining-*} headers back;
 *   <li>on a 429: report it with its {@code Retry-After} (the coordinator empties its buckets and
 *       pauses every worker until then), and retry through {@code acquire}, never around it. {@code insufficient_quota} stops the batch;
 *       "Request too large" fails the prompt.
 * </ol>
 *
 * <p>With {@code --pool NAME} the worker draws on a pool of projects or keys: each call acquires on
 * the pool, the permit names the member that granted ({@link Permit#member()}), and the call goes
 * upstream with that member's own key ({@code --member-key MEMBER=KEY} or {@code --member-keys
 * FILE}); the answer's headers and its 429s are reported on the member, so only that member
 * pauses while the others carry the traffic. The keys stay with the worker.
 *
 * <p>{@code --mode local} is what people do today: SDK retries on, a per-process semaphore, and
 * a sleep of {@code Retry-After} when the SDK gives up.
 */
@Command(
    name = "openai-batch",
    mixinStandardHelpOptions = true,
    description = "Runs a file of prompts through an OpenAI-compatible API, coordinated by Sluice.")
public final class OpenAiBatch implements Callable<Integer> {

  enum Mode {
    sluice,
    local
  }

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Option(names = "--input", required = true, description = "Prompts: JSONL {id, prompt} or CSV id,prompt.")
  Path input;

  @Option(names = "--output", description = "Results, one JSON line per prompt.")
  Path output;

  @Option(names = "--summary", description = "Run summary as JSON.")
  Path summaryFile;

  @Option(names = "--threads", defaultValue = "8", description = "Worker threads (default ${DEFAULT-VALUE}).")
  int threads;

  @Option(names = "--mode", defaultValue = "sluice", description = "sluice or local (default ${DEFAULT-VALUE}).")
  Mode mode;

  @Option(names = "--model", defaultValue = "gpt-4o-mini")
  String model;

  @Option(names = "--max-tokens", defaultValue = "100", description = "Completion budget per call (default ${DEFAULT-VALUE}).")
  int maxTokens;

  @Option(names = "--base-url", defaultValue = "${env:OPENAI_BASE_URL:-https://api.openai.com/v1}")
  String baseUrl;

  @Option(names = "--api-key", defaultValue = "${env:OPENAI_API_KEY}", description = "Default: $OPENAI_API_KEY.")
  String apiKey;

  @Option(names = "--sluice", defaultValue = "${env:SLUICE_TARGET:-localhost:7420}", description = "Coordinator host:port.")
  String sluiceTarget;

  @Option(names = "--resource", defaultValue = "openai", description = "Sluice resource (default ${DEFAULT-VALUE}).")
  String resource;

  @Option(names = "--pool", paramLabel = "NAME",
      description = "Acquire on this pool instead of --resource: each call uses the key of the member that granted"
          + " (--member-key) and reports that member's 429s and headers. Default: none.")
  String pool;

  @Option(names = "--member-key", paramLabel = "MEMBER=KEY",
      description = "With --pool: the API key of one member (repeatable).")
  Map<String, String> memberKeys = new LinkedHashMap<>();

  @Option(names = "--member-keys", paramLabel = "FILE",
      description = "With --pool: a file of MEMBER=KEY lines (# comments), keeping the keys off the command line.")
  Path memberKeysFile;

  @Option(names = "--lane", defaultValue = "batch", description = "interactive, default or batch (default ${DEFAULT-VALUE}).")
  String lane;

  @Option(names = "--tenant", paramLabel = "NAME",
      description = "The tenant whose share of the quota this worker draws on (the limit's --share, --floor, --cap);"
          + " also sent upstream as the calls' safety_identifier. Default: none (the tenant default).")
  String tenant;

  @Option(names = "--estimate-factor", defaultValue = "1.0", description = "Scales the token estimate (to show settle at work).")
  double estimateFactor;

  @Option(names = "--duration", description = "Cycle through the prompts until this much time has passed, e.g. 20s.")
  String duration;

  @Option(names = "--time-limit", description = "Stop taking new prompts after this long, e.g. 40s (default none).")
  String timeLimit;

  @Option(names = "--shard", description = "K/N: take only prompts whose index mod N is K, e.g. 0/4.")
  String shard;

  @Option(names = "--think-time", description = "Pause between calls of one thread, e.g. 1s (default none).")
  String thinkTime;

  @Option(names = "--learn", paramLabel = "PROVIDER",
      description = "The resource's limit learns from this provider's headers (openai, azure, anthropic):"
          + " checked before the run, and the learned limit is printed and put in the summary.")
  private String learn;

  @Option(names = "--max-attempts", defaultValue = "20", description = "Attempts per prompt (default ${DEFAULT-VALUE}).")
  int maxAttempts;

  @Option(names = "--progress", negatable = true, defaultValue = "true", description = "Progress bar on stderr.")
  boolean progress;

  private final AtomicLong done = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  private final AtomicLong seen429 = new AtomicLong();
  private final AtomicLong tokensCharged = new AtomicLong();
  private final Map<String, AtomicLong> doneByMember = new java.util.concurrent.ConcurrentSkipListMap<>();
  private final AtomicBoolean stop = new AtomicBoolean();
  private final ConcurrentHistogram waits = new ConcurrentHistogram(3_600_000_000L, 2);
  private final List<String> results = new ArrayList<>();
  private volatile String fatal;

  public static void main(String[] args) {
    System.exit(new CommandLine(new OpenAiBatch()).setCaseInsensitiveEnumValuesAllowed(true).execute(args));
  }

  @Override
  public Integer call() throws Exception {
    Map<String, String> keys = memberKeys();
    if (pool == null && (apiKey == null || apiKey.isBlank())) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "no API key: set OPENAI_API_KEY or pass --api-key");
    }
    if (tenant != null) {
      try {
        AcquireOptions.builder().tenant(tenant);
      } catch (IllegalArgumentException e) {
        throw new CommandLine.ParameterException(spec.commandLine(), "--tenant " + tenant + ": " + e.getMessage());
      }
    }
    List<Prompt> prompts = Prompts.load(input);
    if (shard != null) {
      String[] kn = shard.split("/");
      int k = Integer.parseInt(kn[0].strip());
      int n = Integer.parseInt(kn[1].strip());
      if (n < 1 || k < 0 || k >= n) {
        throw new CommandLine.ParameterException(spec.commandLine(), "--shard " + shard + ": use K/N with 0 <= K < N");
      }
      List<Prompt> mine = new ArrayList<>();
      for (int i = k; i < prompts.size(); i += n) {
        mine.add(prompts.get(i));
      }
      prompts = mine;
    }
    long think = thinkTime == null ? 0 : parseDuration(thinkTime).toMillis();
    List<Prompt> all = prompts;
    if (duration != null && timeLimit != null) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "--duration and --time-limit both set: --duration cycles the prompts for that long, --time-limit stops a single pass early; pick one");
    }
    String budget = duration != null ? duration : timeLimit;
    long deadline = budget == null ? Long.MAX_VALUE : System.nanoTime() + parseDuration(budget).toNanos();
    long total = duration == null ? all.size() : -1;
    Lane sluiceLane = Lane.valueOf(lane.toUpperCase(Locale.ROOT));
    // One client per key: a pool's members each have their own (project, organization, deployment).
    Map<String, OpenAIClient> upstreams = new LinkedHashMap<>();
    if (pool == null) {
      upstreams.put(resource, openAiClient(apiKey));
    } else {
      keys.forEach((member, key) -> upstreams.put(member, openAiClient(key)));
    }
    SluiceClient sluice = mode == Mode.sluice ? SluiceClient.builder().target(sluiceTarget).build() : null;
    // Warm both connections before the first grant: a permit should be spent the moment it is
    // granted. A cold HTTP client that sits on its first grants for a second sends them all at
    // once later, and the upstream sees a burst the coordinator never allowed.
    for (OpenAIClient c : upstreams.values()) {
      c.models().list();
    }
    warmChatPath();
    if (sluice != null && !sluice.warmUp(Duration.ofSeconds(10))) {
      System.err.println("no Sluice coordinator at " + sluiceTarget + " answered within 10 s; going on: calls fail"
          + " or wait until one does");
    }
    LearnCheck learning = null;
    if (learn != null) {
      if (sluice == null) {
        throw new CommandLine.ParameterException(spec.commandLine(), "--learn needs --mode sluice: the coordinator learns the limit");
      }
      learning = new LearnCheck(sluiceTarget, resource, learn);
      String problem = learning.problem();
      if (problem != null) {
        learning.close();
        throw new CommandLine.ParameterException(spec.commandLine(), problem);
      }
    }
    Semaphore local = new Semaphore(threads);
    AtomicLong next = new AtomicLong();
    long started = System.nanoTime();
    Thread bar = progress ? startProgress(total, started) : null;
    // The first call runs alone: it loads and compiles the client's request path, which would
    // otherwise hold the first grants of every thread at once (see the warm-up above).
    long first = next.getAndIncrement();
    if (duration == null ? first < all.size() : System.nanoTime() < deadline) {
      Prompt p = all.get((int) (first % all.size()));
      run(upstreams, sluice, sluiceLane, local, duration == null ? p.id() : p.id() + "#0", p.text(), deadline);
    }
    if (learning != null) {
      // The first answer's headers were reported: the limit is now the provider's.
      System.err.println("limit of " + resource + " after the first call: " + learning.now());
    }
    List<Thread> workers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      Thread w =
          new Thread(
              () -> {
                long i;
                while (!stop.get() && (i = next.getAndIncrement()) >= 0) {
                  if (duration == null && i >= all.size()) {
                    return;
                  }
                  if (System.nanoTime() >= deadline) {
                    return;
                  }
                  Prompt p = all.get((int) (i % all.size()));
                  String id = duration == null ? p.id() : p.id() + "#" + (i / all.size());
                  try {
                    run(upstreams, sluice, sluiceLane, local, id, p.text(), deadline);
                    if (think > 0) {
                      Thread.sleep(think);
                    }
                  } catch (InterruptedException e) {
                    return;
                  }
                }
              },
              "worker-" + t);
      w.start();
      workers.add(w);
    }
    for (Thread w : workers) {
      w.join();
    }
    long wallNanos = System.nanoTime() - started;
    if (bar != null) {
      bar.interrupt();
      bar.join();
    }
    upstreams.values().forEach(OpenAIClient::close);
    if (sluice != null) {
      sluice.close();
    }
    Map<String, Object> learned = null;
    if (learning != null) {
      learned = learning.now();
      learning.close();
    }
    writeOutputs(wallNanos, learned);
    if (fatal != null) {
      System.err.println("stopped: " + fatal);
      return 3;
    }
    return failed.get() == 0 ? 0 : 1;
  }

  private void run(
      Map<String, OpenAIClient> upstreams, SluiceClient sluice, Lane sluiceLane, Semaphore local, String id, String text, long deadline)
      throws InterruptedException {
    List<TokenEstimator.Message> messages = List.of(new TokenEstimator.Message("user", text));
    long charge = TokenEstimator.admissionCharge(messages, 1, maxTokens);
    long estimate = Math.max(1, Math.round(charge * estimateFactor));
    ChatCompletionCreateParams.Builder request =
        ChatCompletionCreateParams.builder().model(model).addUserMessage(text).maxCompletionTokens(maxTokens);
    if (tenant != null) {
      // OpenAI's field for the end user a call is for: the upstream (and the mock's stats) can
      // tell the tenants' calls apart.
      request.safetyIdentifier(tenant);
    }
    ChatCompletionCreateParams params = request.build();
    for (int attempt = 1; attempt <= maxAttempts && !stop.get(); attempt++) {
      if (sluice != null) {
        long left = deadline == Long.MAX_VALUE ? TimeUnit.MINUTES.toNanos(5) : deadline - System.nanoTime();
        if (left <= 0) {
          return;
        }
        Permit granted;
        try {
          granted =
              sluice.acquire(
                  pool != null ? pool : resource,
                  Load.of("requests", 1, "tokens", estimate),
                  acquireOptions(sluiceLane, Duration.ofNanos(Math.min(left, TimeUnit.MINUTES.toNanos(5)))));
        } catch (AcquireTimeoutException e) {
          return; // out of time
        }
        try (Permit p = granted) {
          waits.recordValue(Math.max(1, p.waited().toNanos() / 1_000));
          OpenAIClient openai = upstreams.get(pool != null ? p.member() : resource);
          if (openai == null) {
            fatal = "pool " + pool + " granted member " + p.member() + ", but this worker has no key for it: add"
                + " --member-key " + p.member() + "=KEY (it has " + upstreams.keySet() + ")";
            stop.set(true);
            return;
          }
          if (call(openai, sluice, p, params, id, attempt)) {
            return;
          }
        }
      } else {
        if (System.nanoTime() >= deadline) {
          return; // out of time
        }
        local.acquire();
        try {
          if (call(upstreams.values().iterator().next(), null, null, params, id, attempt)) {
            return;
          }
        } finally {
          local.release();
        }
      }
    }
    if (!stop.get()) {
      failed.incrementAndGet();
      record(id, false, maxAttempts, 0, 0, "gave up after " + maxAttempts + " attempts");
    }
  }

  /**
   * Writes a chat request and reads a chat answer once, without sending anything: the classes of
   * that path load now. Left to the first call, they take a second or more on a busy machine,
   * between the grant and the request going out, and the upstream meets a late burst.
   */
  private void warmChatPath() throws IOException {
    JsonMapper mapper = ObjectMappers.jsonMapper();
    mapper.writeValueAsBytes(ChatCompletionCreateParams.builder().model(model).addUserMessage("warm-up")
        .maxCompletionTokens(maxTokens).build()._body());
    ChatCompletion answer = mapper.readValue("{\"id\":\"warm-up\",\"object\":\"chat.completion\",\"created\":0,"
        + "\"model\":\"warm-up\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"logprobs\":null,"
        + "\"message\":{\"role\":\"assistant\",\"content\":\"ok\",\"refusal\":null}}],"
        + "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}", ChatCompletion.class);
    answer.validate();
  }

  private AcquireOptions acquireOptions(Lane sluiceLane, Duration timeout) {
    AcquireOptions.Builder options = AcquireOptions.builder().lane(sluiceLane).timeout(timeout);
    if (tenant != null) {
      options.tenant(tenant);
    }
    return options.build();
  }

  /** One upstream call. True when the prompt is finished (done or failed for good). */
  private boolean call(
      OpenAIClient openai, SluiceClient sluice, Permit permit, ChatCompletionCreateParams params, String id, int attempt)
      throws InterruptedException {
    try {
      HttpResponseFor<ChatCompletion> raw = openai.chat().completions().withRawResponse().create(params);
      ChatCompletion completion = raw.parse();
      CompletionUsage usage = completion.usage().orElse(null);
      long prompt = usage == null ? 0 : usage.promptTokens();
      long completionTokens = usage == null ? 0 : usage.completionTokens();
      // What counted against TPM: the prompt and the whole completion budget (no refund).
      long charged = prompt + maxTokens;
      tokensCharged.addAndGet(charged);
      if (permit != null) {
        permit.settle(Load.of("tokens", charged));
        sluice.reportHeaders(permit.member(), flatten(raw.headers()));
      }
      done.incrementAndGet();
      if (permit != null && pool != null) {
        doneByMember.computeIfAbsent(permit.member(), m -> new AtomicLong()).incrementAndGet();
      }
      record(id, true, attempt, prompt, completionTokens, null);
      return true;
    } catch (RateLimitException e) {
      seen429.incrementAndGet();
      String type = e.type().orElse("");
      String message = String.valueOf(e.getMessage());
      if ("insufficient_quota".equals(type) || message.contains("insufficient_quota")) {
        fatal = "the upstream says the quota is used up (insufficient_quota): add credit; retrying cannot help";
        stop.set(true);
        return true;
      }
      if (message.contains("Request too large")) {
        failed.incrementAndGet();
        record(id, false, attempt, 0, 0, "request too large for the TPM limit");
        return true;
      }
      Duration retryAfter = retryAfter(e.headers());
      // The permit keeps its tokens: the report below empties the coordinator's buckets anyway,
      // and a refund landing after it would put the books ahead of the upstream again.
      if (sluice != null) {
        // Every worker pauses until Retry-After; then this one retries through acquire.
        // On the member that granted: only its upstream said no (the pool's other members go on).
        sluice.reportThrottled(permit.member(), retryAfter, flatten(e.headers()));
      } else {
        Thread.sleep(retryAfter.toMillis());
      }
      return false;
    } catch (OpenAIServiceException e) {
      if (e.statusCode() >= 500 || e.statusCode() == 408 || e.statusCode() == 409) {
        // Whether the upstream charged it is unknown: keep the estimate on the books.
        Thread.sleep(Math.min(8_000, 500L << Math.min(4, attempt - 1)));
        return false;
      }
      failed.incrementAndGet();
      record(id, false, attempt, 0, 0, e.statusCode() + ": " + e.getMessage());
      return true;
    } catch (OpenAIIoException e) {
      Thread.sleep(Math.min(8_000, 500L << Math.min(4, attempt - 1)));
      return false;
    }
  }

  private OpenAIClient openAiClient(String key) {
    return OpenAIOkHttpClient.builder()
        .baseUrl(baseUrl)
        .apiKey(key)
        // Behind Sluice the SDK must not retry: its retries would go around the coordinator.
        .maxRetries(mode == Mode.sluice ? 0 : 2)
        .timeout(Duration.ofSeconds(60))
        .build();
  }

  /** The members' keys of --member-key and --member-keys; checked against --pool and --mode. */
  private Map<String, String> memberKeys() throws IOException {
    Map<String, String> keys = new LinkedHashMap<>(memberKeys);
    if (memberKeysFile != null) {
      int n = 0;
      for (String line : Files.readAllLines(memberKeysFile)) {
        n++;
        String l = line.strip();
        if (l.isEmpty() || l.startsWith("#")) {
          continue;
        }
        int eq = l.indexOf('=');
        if (eq <= 0 || eq == l.length() - 1) {
          throw new CommandLine.ParameterException(spec.commandLine(),
              "--member-keys " + memberKeysFile + " line " + n + ": not MEMBER=KEY");
        }
        keys.put(l.substring(0, eq).strip(), l.substring(eq + 1).strip());
      }
    }
    if (pool == null && !keys.isEmpty()) {
      throw new CommandLine.ParameterException(spec.commandLine(),
          "--member-key or --member-keys without --pool: name the pool the members are in");
    }
    if (pool != null) {
      if (mode != Mode.sluice) {
        throw new CommandLine.ParameterException(spec.commandLine(),
            "--pool needs --mode sluice: the coordinator picks the member of each call");
      }
      if (learn != null) {
        throw new CommandLine.ParameterException(spec.commandLine(), "--learn with --pool: a pool has no limit of its"
            + " own to learn; set `--learn openai` on each member's limit, and the reports on the members teach them");
      }
      if (keys.isEmpty()) {
        throw new CommandLine.ParameterException(spec.commandLine(),
            "--pool " + pool + " without keys: give each member's with --member-key MEMBER=KEY or --member-keys FILE");
      }
      keys.forEach((member, key) -> {
        if (key == null || key.isBlank()) {
          throw new CommandLine.ParameterException(spec.commandLine(), "--member-key " + member + "= has no key");
        }
      });
    }
    return keys;
  }

  /** An openai-java response's headers as the single-valued map {@code SluiceClient.report} takes. */
  public static Map<String, String> flatten(Headers headers) {
    Map<String, String> out = new LinkedHashMap<>();
    for (String name : headers.names()) {
      List<String> values = headers.values(name);
      if (!values.isEmpty()) {
        out.put(name, values.get(0));
      }
    }
    return out;
  }

  /** The wait a 429 asks for: {@code retry-after-ms}, else {@code retry-after} seconds, else 1 s. */
  public static Duration retryAfter(Headers headers) {
    for (String name : headers.names()) {
      if (name.equalsIgnoreCase("retry-after-ms") && !headers.values(name).isEmpty()) {
        try {
          return Duration.ofMillis((long) Math.ceil(Double.parseDouble(headers.values(name).get(0))));
        } catch (NumberFormatException ignored) {
          // fall through to retry-after
        }
      }
    }
    for (String name : headers.names()) {
      if (name.equalsIgnoreCase("retry-after") && !headers.values(name).isEmpty()) {
        try {
          return Duration.ofMillis((long) Math.ceil(Double.parseDouble(headers.values(name).get(0)) * 1000));
        } catch (NumberFormatException ignored) {
          // not a number of seconds
        }
      }
    }
    return Duration.ofSeconds(1);
  }

  private synchronized void record(String id, boolean ok, int attempts, long prompt, long completion, String error) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("id", id);
    r.put("ok", ok);
    r.put("attempts", attempts);
    r.put("prompt_tokens", prompt);
    r.put("completion_tokens", completion);
    if (error != null) {
      r.put("error", error);
    }
    try {
      results.add(new ObjectMapper().writeValueAsString(r));
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  private void writeOutputs(long wallNanos, Map<String, Object> learned) throws IOException {
    if (output != null) {
      try (BufferedWriter w = Files.newBufferedWriter(output)) {
        synchronized (this) {
          for (String line : results) {
            w.write(line);
            w.newLine();
          }
        }
      }
    }
    Map<String, Object> s = new LinkedHashMap<>();
    s.put("mode", mode.name());
    if (tenant != null) {
      s.put("tenant", tenant);
    }
    if (pool != null) {
      s.put("pool", pool);
      Map<String, Long> byMember = new LinkedHashMap<>();
      doneByMember.forEach((m, n) -> byMember.put(m, n.get()));
      s.put("done_by_member", byMember);
    }
    s.put("done", done.get());
    s.put("failed", failed.get());
    s.put("worker_429s", seen429.get());
    s.put("tokens_charged", tokensCharged.get());
    s.put("wall_ms", TimeUnit.NANOSECONDS.toMillis(wallNanos));
    s.put("wait_p50_ms", waits.getTotalCount() == 0 ? 0 : waits.getValueAtPercentile(50) / 1000.0);
    s.put("wait_p99_ms", waits.getTotalCount() == 0 ? 0 : waits.getValueAtPercentile(99) / 1000.0);
    if (fatal != null) {
      s.put("fatal", fatal);
    }
    if (learned != null) {
      s.put("learned_limit", learned);
    }
    if (summaryFile != null) {
      Files.writeString(summaryFile, new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(s));
    }
    PrintStream out = System.out;
    out.printf(
        "summary: mode=%s done=%d failed=%d 429s=%d tokens=%d wall=%.1fs wait p50=%.1fms p99=%.1fms%n",
        mode, done.get(), failed.get(), seen429.get(), tokensCharged.get(), wallNanos / 1e9,
        (Double) s.get("wait_p50_ms") , (Double) s.get("wait_p99_ms"));
  }

  private Thread startProgress(long total, long started) {
    boolean tty = System.console() != null;
    Thread t =
        new Thread(
            () -> {
              try {
                while (!Thread.currentThread().isInterrupted()) {
                  Thread.sleep(tty ? 500 : 5_000);
                  System.err.print(progressLine(total, started) + (tty ? "\r" : "\n"));
                }
              } catch (InterruptedException e) {
                System.err.println(progressLine(total, started));
              }
            },
            "progress");
    t.setDaemon(true);
    t.start();
    return t;
  }

  private String progressLine(long total, long started) {
    long n = done.get() + failed.get();
    double secs = (System.nanoTime() - started) / 1e9;
    double rate = secs > 0 ? n / secs : 0;
    int width = 30;
    if (total > 0) {
      int filled = (int) Math.min(width, width * n / total);
      String eta = rate > 0 ? String.format("%.0fs", (total - n) / rate) : "?";
      return String.format(
          "[%s%s] %d/%d %3.0f%% %.1f req/s ETA %s 429s: %d",
          "#".repeat(filled), ".".repeat(width - filled), n, total, 100.0 * n / total, rate, eta, seen429.get());
    }
    return String.format("%d done %.1f req/s %.0fs 429s: %d", n, rate, secs, seen429.get());
  }

  static Duration parseDuration(String s) {
    String v = s.strip().toLowerCase(Locale.ROOT);
    try {
      if (v.endsWith("ms")) {
        return Duration.ofMillis(Long.parseLong(v.substring(0, v.length() - 2)));
      }
      if (v.endsWith("s")) {
        return Duration.ofMillis(Math.round(Double.parseDouble(v.substring(0, v.length() - 1)) * 1000));
      }
      if (v.endsWith("m")) {
        return Duration.ofSeconds(Math.round(Double.parseDouble(v.substring(0, v.length() - 1)) * 60));
      }
    } catch (NumberFormatException e) {
      // fall through
    }
    throw new IllegalArgumentException("duration '" + s + "' not understood: use e.g. 500ms, 20s or 2m");
  }
}
