package dev.sluice.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.buffers.BatchSettings;
import dev.sluice.buffers.Buffers;
import dev.sluice.buffers.NewItem;
import dev.sluice.proto.v1.BufferInfo;
import dev.sluice.proto.v1.BufferItem;
import dev.sluice.proto.v1.BufferRate;
import dev.sluice.proto.v1.BufferSpec;
import dev.sluice.proto.v1.BufferStats;
import dev.sluice.proto.v1.PushItem;
import io.grpc.Status;
import java.util.ArrayList;
import java.util.List;

/**
 * Buffers on the Admin gRPC service: the protos map onto the same JSON documents the HTTP API
 * takes and gives, so both check a spec and an item with the same code and words.
 */
final class BufferProtos {

  private static final ObjectMapper JSON = new ObjectMapper();

  private BufferProtos() {}

  static Buffers require(Buffers buffers) {
    if (buffers == null) {
      throw Status.UNIMPLEMENTED.withDescription("this coordinator runs without buffers (an engine"
          + " embedded without them): buffers come with every `sluice serve`, on either store").asRuntimeException();
    }
    return buffers;
  }

  /** The spec as the JSON document {@link dev.sluice.buffers.BufferSpec#parse} reads. */
  static ObjectNode spec(BufferSpec p) {
    ObjectNode o = JSON.createObjectNode();
    o.put("name", p.getName());
    o.put("url", p.getUrl());
    if (!p.getMethod().isEmpty()) {
      o.put("method", p.getMethod());
    }
    ObjectNode h = o.putObject("headers");
    p.getHeadersMap().forEach(h::put);
    if (!p.getResource().isEmpty()) {
      o.put("resource", p.getResource());
    }
    if (p.hasRate()) {
      ObjectNode r = o.putObject("rate");
      r.put("amount", p.getRate().getAmount());
      if (p.getRate().hasPeriod()) {
        r.put("period", seconds(p.getRate().getPeriod()));
      }
      if (p.getRate().getBurst() != 0) {
        r.put("burst", p.getRate().getBurst());
      }
    }
    if (p.hasMaxRetries()) {
      o.put("maxRetries", p.getMaxRetries());
    }
    if (!p.getBackoff().isEmpty()) {
      o.put("backoff", p.getBackoff());
    }
    if (p.hasBackoffBase()) {
      o.put("backoffBase", seconds(p.getBackoffBase()));
    }
    if (p.hasBackoffMax()) {
      o.put("backoffMax", seconds(p.getBackoffMax()));
    }
    if (p.getInFlight() != 0) {
      o.put("inFlight", p.getInFlight());
    }
    if (p.hasTimeout()) {
      o.put("timeout", seconds(p.getTimeout()));
    }
    if (p.hasRetention()) {
      o.put("retention", seconds(p.getRetention()));
    }
    o.put("excerptsVisibleToWorkers", p.getExcerptsVisibleToWorkers());
    if (!p.getDelivery().isEmpty()) {
      o.put("delivery", p.getDelivery());
    }
    if (!p.getEndpoint().isEmpty()) {
      o.put("endpoint", p.getEndpoint());
    }
    if (p.hasCompletionWindow()) {
      o.put("completionWindow", seconds(p.getCompletionWindow()));
    }
    if (p.hasMaxBatchItems()) {
      o.put("maxBatchItems", p.getMaxBatchItems());
    }
    if (p.hasMaxBatchBytes()) {
      o.put("maxBatchBytes", p.getMaxBatchBytes());
    }
    if (p.hasFlushAfter()) {
      o.put("flushAfter", seconds(p.getFlushAfter()));
    }
    if (!p.getOverflowTo().isEmpty()) {
      o.put("overflowTo", p.getOverflowTo());
    }
    if (p.hasWhenWaitExceeds()) {
      o.put("whenWaitExceeds", seconds(p.getWhenWaitExceeds()));
    }
    return o;
  }

  private static double seconds(com.google.protobuf.Duration d) {
    return d.getSeconds() + d.getNanos() / 1e9;
  }

  static BufferInfo info(Buffers buffers, dev.sluice.buffers.BufferSpec s) {
    BufferSpec.Builder b = BufferSpec.newBuilder()
        .setName(s.name())
        .setUrl(s.shownUrl())
        .setMethod(s.method())
        .putAllHeaders(jsonMap(s.toPublicJson().get("headers")))
        .setMaxRetries(s.maxRetries())
        .setBackoff(s.backoff().name().toLowerCase(java.util.Locale.ROOT))
        .setBackoffBase(Protos.duration(s.backoffBase()))
        .setBackoffMax(Protos.duration(s.backoffMax()))
        .setInFlight(s.inFlight())
        .setTimeout(Protos.duration(s.timeout()))
        .setRetention(Protos.duration(s.retention()))
        .setExcerptsVisibleToWorkers(s.excerptsVisibleToWorkers())
        .setDelivery(s.batch() == null ? BatchSettings.HTTP : BatchSettings.OPENAI_BATCH);
    if (s.batch() != null) {
      b.setEndpoint(s.batch().endpoint())
          .setCompletionWindow(Protos.duration(s.batch().completionWindow()))
          .setMaxBatchItems(s.batch().maxBatchItems())
          .setMaxBatchBytes(s.batch().maxBatchBytes())
          .setFlushAfter(Protos.duration(s.batch().flushAfter()));
    }
    if (s.overflow() != null) {
      b.setOverflowTo(s.overflow().to()).setWhenWaitExceeds(Protos.duration(s.overflow().whenWaitExceeds()));
    }
    if (s.resource() != null) {
      b.setResource(s.resource());
    } else {
      b.setRate(BufferRate.newBuilder().setAmount(s.rate().amount()).setPeriod(Protos.duration(s.rate().period()))
          .setBurst(s.rate().burst()));
    }
    JsonNode st = buffers.stats(s.name());
    return BufferInfo.newBuilder().setSpec(b).setStats(BufferStats.newBuilder()
        .setPending(st.get("pending").asLong())
        .setRunning(st.get("running").asLong())
        .setCompleted(st.get("completed").asLong())
        .setFailed(st.get("failed").asLong())
        .setPaused(st.get("paused").asBoolean())
        .setDeliveredPerSecond(st.get("deliveredPerSecond").asDouble())
        .setOldestPendingAgeSeconds(st.get("oldestPendingAgeSeconds").asDouble())
        .setDelivered(st.get("delivered").asLong())
        .setOpenBatches(st.path("openBatches").asLong(0))
        .setBatchesUploaded(st.path("batchesUploaded").asLong(0))
        .setBatchesPreparing(st.path("batchesPreparing").asLong(0))
        .setItemsInBatches(st.path("itemsInBatches").asLong(0))
        .setMoved(st.path("moved").asLong(0))).build();
  }

  private static java.util.Map<String, String> jsonMap(JsonNode node) {
    java.util.Map<String, String> m = new java.util.LinkedHashMap<>();
    node.properties().forEach(e -> m.put(e.getKey(), e.getValue().asText()));
    return m;
  }

  static List<NewItem> items(List<PushItem> items) {
    if (items.isEmpty() || items.size() > 10_000) {
      throw Status.INVALID_ARGUMENT.withDescription("push 1 to 10000 items, not " + items.size()).asRuntimeException();
    }
    List<NewItem> out = new ArrayList<>(items.size());
    for (PushItem i : items) {
      ObjectNode h = JSON.createObjectNode();
      i.getHeadersMap().forEach(h::put);
      out.add(NewItem.of(i.getBody().toByteArray(), i.getContentType().isEmpty() ? null : i.getContentType(), h,
          i.getIdempotencyKey().isEmpty() ? null : i.getIdempotencyKey(), i.getKey().isEmpty() ? null : i.getKey()));
    }
    return out;
  }

  static BufferItem item(JsonNode x) {
    BufferItem.Builder b = BufferItem.newBuilder()
        .setId(x.get("id").asLong())
        .setState(x.get("state").asText())
        .setAttempts(x.get("attempts").asInt())
        .setRetriesUsed(x.get("retriesUsed").asInt())
        .setLastStatus(x.path("lastStatus").asInt(0))
        .setResponseExcerpt(x.path("responseExcerpt").asText(""))
        .setPossibleDuplicate(x.get("possibleDuplicate").asBoolean())
        .setIdempotencyKey(x.path("idempotencyKey").asText(""))
        .setKey(x.path("key").isNull() ? "" : x.path("key").asText(""));
    x.get("history").forEach(l -> b.addHistory(l.asText()));
    return b.build();
  }
}
