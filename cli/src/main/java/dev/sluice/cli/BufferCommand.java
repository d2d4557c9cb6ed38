package dev.sluice.cli;

import com.google.protobuf.ByteString;
import dev.sluice.proto.v1.BufferInfo;
import dev.sluice.proto.v1.BufferItem;
import dev.sluice.proto.v1.BufferRate;
import dev.sluice.proto.v1.BufferSpec;
import dev.sluice.proto.v1.BufferStats;
import dev.sluice.proto.v1.CreateBufferRequest;
import dev.sluice.proto.v1.DeleteBufferRequest;
import dev.sluice.proto.v1.GetBufferRequest;
import dev.sluice.proto.v1.GetItemRequest;
import dev.sluice.proto.v1.ListBuffersRequest;
import dev.sluice.proto.v1.ListBuffersResponse;
import dev.sluice.proto.v1.PauseBufferRequest;
import dev.sluice.proto.v1.PushItem;
import dev.sluice.proto.v1.PushItemsRequest;
import dev.sluice.proto.v1.PushItemsResponse;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ResumeBufferRequest;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code sluice buffer create|get|list|stats|pause|resume|delete|push|item}. */
@Command(name = "buffer", mixinStandardHelpOptions = true,
    description = "Buffers: durable queues in front of one endpoint, delivered at a resource's pace, in order,"
        + " with retries (memory or Redis store).",
    subcommands = {BufferCommand.Create.class, BufferCommand.Get.class, BufferCommand.ListBuffers.class,
        BufferCommand.Stats.class, BufferCommand.Pause.class, BufferCommand.Resume.class, BufferCommand.Delete.class,
        BufferCommand.Push.class, BufferCommand.Item.class})
final class BufferCommand implements Callable<Integer> {
  @Spec
  private CommandSpec spec;

  @Override
  public Integer call() {
    spec.commandLine().usage(spec.commandLine().getOut());
    return 0;
  }

  /** Options every subcommand naming one buffer takes. */
  abstract static class Named implements Callable<Integer> {
    @Spec
    CommandSpec spec;
    @Mixin
    ClientOptions client;
    @Mixin
    Output output;
    @Parameters(index = "0", paramLabel = "NAME", description = "The buffer.")
    String name;

    void print(BufferInfo info) {
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, info);
        return;
      }
      BufferSpec s = info.getSpec();
      BufferStats st = info.getStats();
      Table t = new Table("buffer", s.getName());
      t.row("url", s.getMethod() + " " + s.getUrl());
      t.row("paced by", s.getResource().isEmpty() ? "own rate " + s.getRate().getAmount() + "/"
          + Durations.format(s.getRate().getPeriod()) + ":" + s.getRate().getBurst() : s.getResource());
      t.row("headers", s.getHeadersCount() == 0 ? "-" : String.join(" ", s.getHeadersMap().entrySet().stream()
          .map(e -> e.getKey() + ": " + e.getValue()).toList()));
      t.row("retries", s.getMaxRetries() + ", " + s.getBackoff() + " backoff " + Durations.format(s.getBackoffBase())
          + " to " + Durations.format(s.getBackoffMax()));
      t.row("in flight", s.getInFlight() == 1 ? "1 (strict order)" : s.getInFlight() + " (order per key)");
      t.row("excerpts", s.getExcerptsVisibleToWorkers() ? "admins and workers" : "admins only");
      if (s.getDelivery().equals("openai-batch")) {
        t.row("delivery mode", "openai-batch " + s.getEndpoint() + ", window " + s.getCompletionWindow().getSeconds() / 3600
            + "h, up to " + s.getMaxBatchItems() + " items / " + s.getMaxBatchBytes()
            + " bytes, flush after " + Durations.format(s.getFlushAfter()));
      }
      if (!s.getOverflowTo().isEmpty()) {
        t.row("overflow", "to openai-batch buffer " + s.getOverflowTo() + " when the wait passes "
            + Durations.format(s.getWhenWaitExceeds()) + " (" + st.getMoved() + " moved)");
      }
      t.row("items", st.getPending() + " pending, " + st.getRunning() + " running, " + st.getCompleted()
          + " completed, " + st.getFailed() + " failed" + (st.getPaused() ? " (paused)" : ""));
      t.row("delivery", Output.number(st.getDeliveredPerSecond()) + "/s, oldest pending "
          + Output.seconds(st.getOldestPendingAgeSeconds()));
      t.print(out);
    }
  }

  /** {@code sluice buffer create NAME --url URL (--resource R | --rate requests=N/PERIOD[:BURST]) ...}. */
  @Command(name = "create", mixinStandardHelpOptions = true,
      description = "Creates a buffer: items pushed to it go to --url at the pace of --resource (shared with"
          + " workers) or of its own --rate.")
  static final class Create extends Named {
    @Option(names = "--url", required = true, paramLabel = "URL", description = "Where items go (http or https).")
    private String url;
    @Option(names = "--method", paramLabel = "METHOD", defaultValue = "POST",
        description = "POST (default), PUT, PATCH, DELETE or GET.")
    private String method;
    @Option(names = "--resource", paramLabel = "NAME", description = "The resource whose limit paces delivery.")
    private String resource;
    @Option(names = "--rate", paramLabel = "requests=N/PERIOD[:BURST]",
        description = "The buffer's own pace instead of --resource, e.g. requests=10/s.")
    private String rate;
    @Option(names = {"-H", "--header"}, paramLabel = "NAME=VALUE",
        description = "A header for every item (repeat); values are stored as secrets.")
    private Map<String, String> headers = new LinkedHashMap<>();
    @Option(names = "--max-retries", paramLabel = "N", description = "Retries of 5xx/408/errors (default 5).")
    private Integer maxRetries;
    @Option(names = "--backoff", paramLabel = "KIND", description = "exponential (default) or fixed.")
    private String backoff;
    @Option(names = "--backoff-base", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "First (exponential) or every (fixed) retry delay; default 1s.")
    private Duration backoffBase;
    @Option(names = "--backoff-max", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "Longest retry delay; default 5m.")
    private Duration backoffMax;
    @Option(names = "--in-flight", paramLabel = "N",
        description = "Deliveries at once: 1 (default) keeps strict order; N keeps order per item key.")
    private Integer inFlight;
    @Option(names = "--timeout", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "Per attempt; default 30s.")
    private Duration timeout;
    @Option(names = "--retention", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "How long finished items keep their status; default 7d.")
    private Duration retention;
    @Option(names = "--excerpts-visible-to-workers",
        description = "Let worker keys covering the buffer read the endpoint's response excerpts; default: admins"
            + " only (a response may echo the buffer's secrets).")
    private boolean excerptsVisibleToWorkers;
    @Option(names = "--delivery", paramLabel = "MODE",
        description = "http (default): one request per item to --url; openai-batch: items go as lines of OpenAI"
            + " Batch API files, --url being the API base (https://api.openai.com/v1).")
    private String delivery;
    @Option(names = "--endpoint", paramLabel = "PATH",
        description = "openai-batch: the endpoint every line calls, e.g. /v1/chat/completions.")
    private String endpoint;
    @Option(names = "--completion-window", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "openai-batch: the batch's completion window; default and only value 24h.")
    private Duration completionWindow;
    @Option(names = "--max-batch-items", paramLabel = "N",
        description = "openai-batch: lines per batch at most; default 50000 (the provider's cap).")
    private Integer maxBatchItems;
    @Option(names = "--max-batch-bytes", paramLabel = "BYTES",
        description = "openai-batch: bytes of one input file at most; default 209715200 (the provider's 200 MB).")
    private Long maxBatchBytes;
    @Option(names = "--flush-after", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "openai-batch: send a partial batch once its oldest item waited this long; default 10m.")
    private Duration flushAfter;
    @Option(names = "--overflow-to", paramLabel = "BATCHBUFFER",
        description = "http buffers: items whose estimated wait passes --when-wait-exceeds move to this openai-batch"
            + " buffer instead of waiting.")
    private String overflowTo;
    @Option(names = "--when-wait-exceeds", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "With --overflow-to: the wait at this buffer's quota past which an item moves, e.g. 5m.")
    private Duration whenWaitExceeds;

    @Override
    public Integer call() {
      BufferSpec.Builder b = BufferSpec.newBuilder().setName(name).setUrl(url).setMethod(method).putAllHeaders(headers)
          .setExcerptsVisibleToWorkers(excerptsVisibleToWorkers);
      if ((resource == null) == (rate == null)) {
        throw new ParameterException(spec.commandLine(), "give --resource NAME (a limit shared with workers) or"
            + " --rate requests=N/PERIOD (the buffer's own), exactly one");
      }
      if (resource != null) {
        b.setResource(resource);
      } else {
        RateDimension r;
        try {
          r = Rates.parse(rate);
        } catch (IllegalArgumentException e) {
          throw new ParameterException(spec.commandLine(), "--rate: " + e.getMessage());
        }
        if (!r.getName().equals("requests")) {
          throw new ParameterException(spec.commandLine(), "--rate: a buffer's own pace counts requests, e.g."
              + " requests=10/s, not " + r.getName());
        }
        BufferRate.Builder br = BufferRate.newBuilder().setAmount(r.getAmount()).setPeriod(r.getPeriod());
        if (r.getBurst() > 0) {
          br.setBurst(r.getBurst());
        }
        b.setRate(br);
      }
      if (maxRetries != null) {
        b.setMaxRetries(maxRetries);
      }
      if (backoff != null) {
        b.setBackoff(backoff);
      }
      if (backoffBase != null) {
        b.setBackoffBase(Durations.toProto(backoffBase));
      }
      if (backoffMax != null) {
        b.setBackoffMax(Durations.toProto(backoffMax));
      }
      if (inFlight != null) {
        b.setInFlight(inFlight);
      }
      if (timeout != null) {
        b.setTimeout(Durations.toProto(timeout));
      }
      if (retention != null) {
        b.setRetention(Durations.toProto(retention));
      }
      batchOptions(b);
      if (overflowTo != null) {
        b.setOverflowTo(overflowTo);
      }
      if (whenWaitExceeds != null) {
        b.setWhenWaitExceeds(Durations.toProto(whenWaitExceeds));
      }
      try (AdminClient admin = client.connect()) {
        print(admin.call(stub -> stub.createBuffer(CreateBufferRequest.newBuilder().setSpec(b).build())));
      }
      return 0;
    }

    /** The openai-batch settings; the server refuses them on an http buffer, naming the option. */
    private void batchOptions(BufferSpec.Builder b) {
      if (delivery != null) {
        b.setDelivery(delivery);
      }
      if (endpoint != null) {
        b.setEndpoint(endpoint);
      }
      if (completionWindow != null) {
        b.setCompletionWindow(Durations.toProto(completionWindow));
      }
      if (maxBatchItems != null) {
        b.setMaxBatchItems(maxBatchItems);
      }
      if (maxBatchBytes != null) {
        b.setMaxBatchBytes(maxBatchBytes);
      }
      if (flushAfter != null) {
        b.setFlushAfter(Durations.toProto(flushAfter));
      }
    }
  }

  /** {@code sluice buffer get NAME}. */
  @Command(name = "get", mixinStandardHelpOptions = true, description = "Shows a buffer (secrets masked) and its counts.")
  static final class Get extends Named {
    @Override
    public Integer call() {
      try (AdminClient admin = client.connect()) {
        print(admin.call(stub -> stub.getBuffer(GetBufferRequest.newBuilder().setName(name).build())));
      }
      return 0;
    }
  }

  /** {@code sluice buffer stats NAME}: the counts only. */
  @Command(name = "stats", mixinStandardHelpOptions = true,
      description = "Pending, running, completed, failed, delivery rate and oldest pending age.")
  static final class Stats extends Named {
    @Override
    public Integer call() {
      BufferInfo info;
      try (AdminClient admin = client.connect()) {
        info = admin.call(stub -> stub.getBuffer(GetBufferRequest.newBuilder().setName(name).build()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, info.getStats());
        return 0;
      }
      BufferStats st = info.getStats();
      Table t = new Table("BUFFER", "PENDING", "RUNNING", "COMPLETED", "FAILED", "DELIVERED/S", "OLDEST PENDING",
          "PAUSED");
      t.row(name, st.getPending(), st.getRunning(), st.getCompleted(), st.getFailed(),
          Output.number(st.getDeliveredPerSecond()), Output.seconds(st.getOldestPendingAgeSeconds()),
          st.getPaused() ? "yes" : "no");
      t.print(out);
      if (info.getSpec().getDelivery().equals("openai-batch")) {
        out.println("open batches at the provider: " + st.getOpenBatches() + " (uploaded, create not yet confirmed: "
            + st.getBatchesUploaded() + "; being prepared: " + st.getBatchesPreparing() + "); items in them: "
            + st.getItemsInBatches());
      }
      if (!info.getSpec().getOverflowTo().isEmpty()) {
        out.println("moved to " + info.getSpec().getOverflowTo() + ": " + st.getMoved());
      }
      return 0;
    }
  }

  /** {@code sluice buffer list}. */
  @Command(name = "list", mixinStandardHelpOptions = true, description = "Lists buffers with their counts.")
  static final class ListBuffers implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;

    @Override
    public Integer call() {
      ListBuffersResponse r;
      try (AdminClient admin = client.connect()) {
        r = admin.call(stub -> stub.listBuffers(ListBuffersRequest.getDefaultInstance()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, r);
        return 0;
      }
      if (r.getBuffersCount() == 0) {
        out.println("no buffers");
        return 0;
      }
      Table t = new Table("BUFFER", "URL", "PACED BY", "PENDING", "COMPLETED", "FAILED", "PAUSED");
      for (BufferInfo b : r.getBuffersList()) {
        t.row(b.getSpec().getName(), b.getSpec().getMethod() + " " + b.getSpec().getUrl(),
            b.getSpec().getResource().isEmpty() ? "own rate" : b.getSpec().getResource(), b.getStats().getPending(),
            b.getStats().getCompleted(), b.getStats().getFailed(), b.getStats().getPaused() ? "yes" : "no");
      }
      t.print(out);
      return 0;
    }
  }

  /** {@code sluice buffer pause NAME}. */
  @Command(name = "pause", mixinStandardHelpOptions = true, description = "Stops starting deliveries (items stay).")
  static final class Pause extends Named {
    @Override
    public Integer call() {
      try (AdminClient admin = client.connect()) {
        print(admin.call(stub -> stub.pauseBuffer(PauseBufferRequest.newBuilder().setName(name).build())));
      }
      return 0;
    }
  }

  /** {@code sluice buffer resume NAME}. */
  @Command(name = "resume", mixinStandardHelpOptions = true, description = "Delivers again.")
  static final class Resume extends Named {
    @Override
    public Integer call() {
      try (AdminClient admin = client.connect()) {
        print(admin.call(stub -> stub.resumeBuffer(ResumeBufferRequest.newBuilder().setName(name).build())));
      }
      return 0;
    }
  }

  /** {@code sluice buffer delete NAME}. */
  @Command(name = "delete", mixinStandardHelpOptions = true,
      description = "Deletes a buffer and every item in it, delivered or not.")
  static final class Delete extends Named {
    @Override
    public Integer call() {
      try (AdminClient admin = client.connect()) {
        admin.call(stub -> stub.deleteBuffer(DeleteBufferRequest.newBuilder().setName(name).build()));
      }
      spec.commandLine().getOut().println("deleted buffer " + name);
      return 0;
    }
  }

  /** {@code sluice buffer push NAME (--body TEXT | --file F) [--idempotency-key K] [--key K] [-H N=V]}. */
  @Command(name = "push", mixinStandardHelpOptions = true,
      description = "Pushes one item; prints its id. Stored durably before the answer.")
  static final class Push extends Named {
    @Option(names = "--body", paramLabel = "TEXT", description = "The body, as is.")
    private String body;
    @Option(names = "--file", paramLabel = "FILE", description = "The body, from a file ('-' for standard input).")
    private String file;
    @Option(names = "--content-type", paramLabel = "TYPE", description = "Content-Type of the body.")
    private String contentType;
    @Option(names = {"-H", "--header"}, paramLabel = "NAME=VALUE", description = "A header for this item (repeat).")
    private Map<String, String> headers = new LinkedHashMap<>();
    @Option(names = "--idempotency-key", paramLabel = "KEY",
        description = "De-duplicates pushes; sent as the Idempotency-Key header.")
    private String idempotencyKey;
    @Option(names = "--key", paramLabel = "KEY", description = "Order key, for buffers with --in-flight above 1.")
    private String key;

    @Override
    public Integer call() {
      if ((body == null) == (file == null)) {
        throw new ParameterException(spec.commandLine(), "give the item's body with --body TEXT or --file FILE, one");
      }
      byte[] bytes;
      try {
        bytes = body != null ? body.getBytes(StandardCharsets.UTF_8)
            : file.equals("-") ? System.in.readAllBytes() : Files.readAllBytes(Path.of(file));
      } catch (IOException e) {
        throw new ParameterException(spec.commandLine(), "cannot read " + file + ": " + e.getMessage());
      }
      PushItem.Builder item = PushItem.newBuilder().setBody(ByteString.copyFrom(bytes)).putAllHeaders(headers);
      if (contentType != null) {
        item.setContentType(contentType);
      }
      if (idempotencyKey != null) {
        item.setIdempotencyKey(idempotencyKey);
      }
      if (key != null) {
        item.setKey(key);
      }
      PushItemsResponse r;
      try (AdminClient admin = client.connect()) {
        r = admin.call(stub -> stub.pushItems(PushItemsRequest.newBuilder().setName(name).addItems(item).build()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, r);
      } else {
        out.println(r.getIds(0));
      }
      return 0;
    }
  }

  /** {@code sluice buffer item NAME ID}. */
  @Command(name = "item", mixinStandardHelpOptions = true,
      description = "One item: state, attempts, last status, response excerpt, history.")
  static final class Item extends Named {
    @Parameters(index = "1", paramLabel = "ID", description = "The id the push printed.")
    private long id;

    @Override
    public Integer call() {
      BufferItem it;
      try (AdminClient admin = client.connect()) {
        it = admin.call(stub -> stub.getItem(GetItemRequest.newBuilder().setName(name).setId(id).build()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, it);
        return 0;
      }
      Table t = new Table("item", name + " #" + it.getId());
      t.row("state", it.getState() + (it.getPossibleDuplicate() ? " (possible duplicate: re-sent after a crash)" : ""));
      t.row("attempts", it.getAttempts() + " (" + it.getRetriesUsed() + " retries used)");
      t.row("last status", it.getLastStatus() == 0 ? "-" : it.getLastStatus());
      t.row("idempotency key", it.getIdempotencyKey());
      t.print(out);
      for (String line : it.getHistoryList()) {
        out.println("  " + line);
      }
      return 0;
    }
  }
}
