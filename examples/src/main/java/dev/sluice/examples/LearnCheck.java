package dev.sluice.examples;

import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DescribeRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * {@code OpenAiBatch --learn PROVIDER}: the resource's limit must learn from that provider (an
 * admin sets that once, {@code sluice limit set R --learn P}; a worker never resets what was
 * learned). Reads the limit through the worker's Describe call, before the run and after it.
 */
final class LearnCheck implements AutoCloseable {

  static final Set<String> PROVIDERS = Set.of("openai", "azure", "anthropic");

  private final ManagedChannel channel;
  private final String resource;
  private final String provider;

  LearnCheck(String target, String resource, String provider) {
    this.channel = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build();
    this.resource = resource;
    this.provider = provider;
  }

  /** Null if the limit learns from the provider; else what is wrong and the fix. */
  String problem() {
    if (!PROVIDERS.contains(provider)) {
      return "--learn " + provider + " is not a provider Sluice reads: use --learn openai, --learn azure or --learn anthropic";
    }
    Limit limit;
    try {
      limit = describe();
    } catch (StatusRuntimeException e) {
      return "cannot read the limit of '" + resource + "' (" + e.getStatus().getCode() + ": "
          + e.getStatus().getDescription() + "): create it with `sluice limit set " + resource + " --learn " + provider + "`";
    }
    if (!limit.hasLearn() || !limit.getLearn().getProvider().equals(provider)) {
      return "the limit of '" + resource + "' does not learn from " + provider + ": run `sluice limit set " + resource
          + " --learn " + provider + "` (it keeps other settings only if you give them again)";
    }
    return null;
  }

  /** The limit now: its rates per minute by dimension, when it was learned, and from what. */
  Map<String, Object> now() {
    Limit limit = describe();
    Map<String, Object> out = new LinkedHashMap<>();
    Map<String, Long> perMinute = new LinkedHashMap<>();
    for (RateDimension r : limit.getRatesList()) {
      double minutes = (r.getPeriod().getSeconds() + r.getPeriod().getNanos() / 1e9) / 60.0;
      perMinute.put(r.getName(), Math.round(r.getAmount() / minutes));
    }
    out.put("per_minute", perMinute);
    out.put("learned_at_unix_millis", limit.getLearn().getLearnedAtUnixMillis());
    out.put("was", limit.getLearn().getWas());
    return out;
  }

  private Limit describe() {
    return CoordinatorGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
        .describe(DescribeRequest.newBuilder().setResource(resource).build()).getLimit();
  }

  @Override
  public void close() {
    channel.shutdownNow();
  }
}
