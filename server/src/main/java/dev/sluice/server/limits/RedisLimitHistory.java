package dev.sluice.server.limits;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.engine.RedisStore;
import io.lettuce.core.ScoredValue;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * The history on Redis, shared by every node: a list per resource ({@code
 * sluice:history:{resource}}, newest first, cut to the cap by {@code LTRIM} after each push) and
 * a sorted set of the resources by their last change ({@code sluice:history}); beyond the
 * resources cap the longest unchanged leave it and their lists are deleted. Separate commands,
 * not a script: on a Cluster the keys live in different slots, and a race between two nodes
 * trimming at once only trims twice.
 */
public final class RedisLimitHistory implements LimitHistory {

  static final String INDEX = "sluice:history";
  private static final ObjectMapper JSON = new ObjectMapper();

  private final RedisStore store;
  private final int perResource;
  private final int resources;

  public RedisLimitHistory(RedisStore store) {
    this(store, PER_RESOURCE, RESOURCES);
  }

  /** With other caps (tests). */
  public RedisLimitHistory(RedisStore store, int perResource, int resources) {
    if (perResource < 1 || resources < 1) {
      throw new IllegalArgumentException("history caps must be at least 1");
    }
    this.store = store;
    this.perResource = perResource;
    this.resources = resources;
  }

  static String key(String resource) {
    return "sluice:history:{" + resource + "}";
  }

  @Override
  public CompletableFuture<Void> add(String resource, Entry entry) {
    String json;
    try {
      json = JSON.writeValueAsString(entry);
    } catch (JsonProcessingException e) {
      throw new UncheckedIOException(e);
    }
    var redis = store.async();
    return redis.lpush(key(resource), json).toCompletableFuture()
        .thenCompose(n -> redis.ltrim(key(resource), 0, perResource - 1))
        .thenCompose(ok -> redis.zadd(INDEX, entry.atMillis(), resource))
        .thenCompose(added -> redis.zcard(INDEX))
        .thenCompose(count -> count <= resources ? CompletableFuture.completedFuture(null)
            : redis.zpopmin(INDEX, count - resources).toCompletableFuture().thenCompose(gone -> {
              List<String> keys = new ArrayList<>();
              for (ScoredValue<String> g : gone) {
                keys.add(key(g.getValue()));
              }
              // One DEL a key: a Cluster refuses a DEL across slots.
              CompletableFuture<?>[] each = keys.stream()
                  .map(k -> redis.del(k).toCompletableFuture()).toArray(CompletableFuture[]::new);
              return CompletableFuture.allOf(each);
            }))
        .thenApply(x -> null);
  }

  @Override
  public CompletableFuture<List<Entry>> recent(String resource, int n) {
    return store.async().lrange(key(resource), 0, n - 1).toCompletableFuture().thenApply(raw -> {
      List<Entry> out = new ArrayList<>(raw.size());
      for (String s : raw) {
        try {
          out.add(JSON.readValue(s, Entry.class));
        } catch (JsonProcessingException e) {
          // Written by another version: shown as such rather than failing the whole history.
          out.add(new Entry(0, "?", "unreadable", List.of(s.length() > 200 ? s.substring(0, 200) : s)));
        }
      }
      return out;
    });
  }
}
