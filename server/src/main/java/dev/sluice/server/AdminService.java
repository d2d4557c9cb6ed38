package dev.sluice.server;

import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.ApplyLimitsRequest;
import dev.sluice.proto.v1.ApplyLimitsResponse;
import dev.sluice.proto.v1.ExportLimitsRequest;
import dev.sluice.proto.v1.ExportLimitsResponse;
import dev.sluice.proto.v1.LimitChange;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.CreateKeyResponse;
import dev.sluice.proto.v1.ListKeysRequest;
import dev.sluice.proto.v1.ListKeysResponse;
import dev.sluice.proto.v1.RevokeKeyRequest;
import dev.sluice.proto.v1.RevokeKeyResponse;
import dev.sluice.server.auth.KeyAdmin;
import dev.sluice.proto.v1.DeleteLimitRequest;
import dev.sluice.proto.v1.DeleteLimitResponse;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ListLimitsRequest;
import dev.sluice.proto.v1.ListLimitsResponse;
import dev.sluice.proto.v1.PauseRequest;
import dev.sluice.proto.v1.PauseResponse;
import dev.sluice.proto.v1.ResumeRequest;
import dev.sluice.proto.v1.ResumeResponse;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.proto.v1.SetLimitResponse;
import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.Templates;
import dev.sluice.server.engine.ResourceSnapshot;
import dev.sluice.server.engine.TenantShares;
import dev.sluice.proto.v1.ResourceStats;
import java.util.concurrent.CompletableFuture;
import dev.sluice.server.engine.Validation;
import dev.sluice.proto.v1.DeletePriceRequest;
import dev.sluice.proto.v1.DeletePriceResponse;
import dev.sluice.proto.v1.ListPricesRequest;
import dev.sluice.proto.v1.ListPricesResponse;
import dev.sluice.proto.v1.ModelPrice;
import dev.sluice.proto.v1.SetPriceRequest;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.limits.LimitsApply;
import dev.sluice.server.limits.LimitsDocument;
import dev.sluice.server.limits.LimitsFileException;
import dev.sluice.server.price.Price;
import dev.sluice.server.price.Prices;
import io.grpc.stub.StreamObserver;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.function.Supplier;

/**
 * The admin service. Engine calls never block (see {@link Engine}): they answer from their
 * futures. Buffers and API keys still write the data directory (or call Redis) synchronously,
 * so their calls run on {@code blocking}, off the transport threads.
 */
final class AdminService extends AdminGrpc.AdminImplBase {

  private final Engine engine;
  private final Executor blocking;
  private final KeyAdmin keys;
  private final dev.sluice.buffers.Buffers buffers;
  private final Prices prices;
  private final TenantShares tenantShares;
  private final dev.sluice.server.limits.LimitChanges changes;

  AdminService(Engine engine, Executor blocking, KeyAdmin keys) {
    this(engine, blocking, keys, null);
  }

  /** @param buffers the buffers, null where there are none (shared store) */
  AdminService(Engine engine, Executor blocking, KeyAdmin keys, dev.sluice.buffers.Buffers buffers) {
    this(engine, blocking, keys, buffers, null);
  }

  /** @param prices the price table, null where there is none */
  AdminService(Engine engine, Executor blocking, KeyAdmin keys, dev.sluice.buffers.Buffers buffers,
      Prices prices) {
    this(engine, blocking, keys, buffers, prices, new TenantShares(System::nanoTime));
  }

  /** @param tenantShares the tenants' recent shares, shared with the dashboard */
  AdminService(Engine engine, Executor blocking, KeyAdmin keys, dev.sluice.buffers.Buffers buffers,
      Prices prices, TenantShares tenantShares) {
    this(engine, blocking, keys, buffers, prices, tenantShares, new dev.sluice.server.limits.LimitChanges(engine));
  }

  /** @param changes where limit changes go: ownership, audit line, history */
  AdminService(Engine engine, Executor blocking, KeyAdmin keys, dev.sluice.buffers.Buffers buffers,
      Prices prices, TenantShares tenantShares, dev.sluice.server.limits.LimitChanges changes) {
    this.changes = changes;
    this.tenantShares = tenantShares;
    this.engine = engine;
    this.blocking = blocking;
    this.keys = keys;
    this.buffers = buffers;
    this.prices = prices;
  }

  // Buffers: writes commit to the data dir, so they run on the blocking executor too.

  @Override
  public void createBuffer(dev.sluice.proto.v1.CreateBufferRequest req,
      StreamObserver<dev.sluice.proto.v1.BufferInfo> observer) {
    blocking.execute(() -> answer(observer, () -> {
      var b = BufferProtos.require(buffers);
      return BufferProtos.info(b, b.create(BufferProtos.spec(req.getSpec())));
    }));
  }

  @Override
  public void getBuffer(dev.sluice.proto.v1.GetBufferRequest req, StreamObserver<dev.sluice.proto.v1.BufferInfo> observer) {
    blocking.execute(() -> answer(observer, () -> info(req.getName()))); // counts read the backend
  }

  private dev.sluice.proto.v1.BufferInfo info(String name) {
    var b = BufferProtos.require(buffers);
    return BufferProtos.info(b, b.get(name).orElseThrow(() -> new EngineException(EngineException.Reason.NOT_FOUND,
        "no buffer '" + name + "': create it with `sluice buffer create` or check the name")));
  }

  @Override
  public void listBuffers(dev.sluice.proto.v1.ListBuffersRequest req,
      StreamObserver<dev.sluice.proto.v1.ListBuffersResponse> observer) {
    blocking.execute(() -> answer(observer, () -> {
      var b = BufferProtos.require(buffers);
      var out = dev.sluice.proto.v1.ListBuffersResponse.newBuilder();
      for (String name : b.names()) {
        b.get(name).ifPresent(spec -> out.addBuffers(BufferProtos.info(b, spec)));
      }
      return out.build();
    }));
  }

  @Override
  public void deleteBuffer(dev.sluice.proto.v1.DeleteBufferRequest req,
      StreamObserver<dev.sluice.proto.v1.DeleteBufferResponse> observer) {
    blocking.execute(() -> answer(observer, () -> {
      BufferProtos.require(buffers).delete(req.getName());
      return dev.sluice.proto.v1.DeleteBufferResponse.getDefaultInstance();
    }));
  }

  @Override
  public void pauseBuffer(dev.sluice.proto.v1.PauseBufferRequest req,
      StreamObserver<dev.sluice.proto.v1.BufferInfo> observer) {
    blocking.execute(() -> answer(observer, () -> {
      BufferProtos.require(buffers).pause(req.getName());
      return info(req.getName());
    }));
  }

  @Override
  public void resumeBuffer(dev.sluice.proto.v1.ResumeBufferRequest req,
      StreamObserver<dev.sluice.proto.v1.BufferInfo> observer) {
    blocking.execute(() -> answer(observer, () -> {
      BufferProtos.require(buffers).resume(req.getName());
      return info(req.getName());
    }));
  }

  @Override
  public void pushItems(dev.sluice.proto.v1.PushItemsRequest req,
      StreamObserver<dev.sluice.proto.v1.PushItemsResponse> observer) {
    try {
      var items = BufferProtos.items(req.getItemsList());
      BufferProtos.require(buffers).push(req.getName(), items).whenComplete((ids, error) -> {
        if (error != null) {
          observer.onError(Statuses.of(error));
          return;
        }
        observer.onNext(dev.sluice.proto.v1.PushItemsResponse.newBuilder().addAllIds(ids).build());
        observer.onCompleted();
      });
    } catch (RuntimeException e) {
      observer.onError(Statuses.of(e));
    }
  }

  @Override
  public void getItem(dev.sluice.proto.v1.GetItemRequest req, StreamObserver<dev.sluice.proto.v1.BufferItem> observer) {
    blocking.execute(() -> answer(observer, () -> BufferProtos.item(BufferProtos.require(buffers).item(req.getName(), req.getId()))));
  }

  @Override
  public void createKey(CreateKeyRequest req, StreamObserver<CreateKeyResponse> observer) {
    blocking.execute(() -> answer(observer, () -> keys.create(req)));
  }

  @Override
  public void listKeys(ListKeysRequest req, StreamObserver<ListKeysResponse> observer) {
    blocking.execute(() -> answer(observer, keys::list)); // a Redis key store reads Redis
  }

  @Override
  public void revokeKey(RevokeKeyRequest req, StreamObserver<RevokeKeyResponse> observer) {
    blocking.execute(() -> answer(observer, () -> keys.revoke(req)));
  }

  // Prices: a shared store's table is written with a Redis round trip, so off the transport threads.

  @Override
  public void setPrice(SetPriceRequest req, StreamObserver<ModelPrice> observer) {
    String by = who(); // the call's context stays on this thread
    blocking.execute(() -> answer(observer, () -> {
      ModelPrice m = req.getPrice();
      Price p = Price.parse(m.getModel(), m.getInput(), m.getOutput(), m.getCachedInput());
      prices().set(p, by);
      return price(p);
    }));
  }

  @Override
  public void listPrices(ListPricesRequest req, StreamObserver<ListPricesResponse> observer) {
    answer(observer, () -> {
      ListPricesResponse.Builder b = ListPricesResponse.newBuilder();
      prices().list().forEach(p -> b.addPrices(price(p)));
      return b.build();
    });
  }

  @Override
  public void deletePrice(DeletePriceRequest req, StreamObserver<DeletePriceResponse> observer) {
    String by = who();
    blocking.execute(() -> answer(observer, () -> {
      prices().delete(Price.model(req.getModel()), by);
      return DeletePriceResponse.getDefaultInstance();
    }));
  }

  private Prices prices() {
    if (prices == null) {
      throw new EngineException(EngineException.Reason.INVALID, "this coordinator runs without a price table (an"
          + " engine embedded without one): prices come with every `sluice serve`");
    }
    return prices;
  }

  /** Who made a change, for its log line. */
  private static String who() {
    Principal p = Principal.current();
    return (p == null ? "open coordinator" : "key " + p.keyId()) + ", gRPC port";
  }

  static ModelPrice price(Price p) {
    return ModelPrice.newBuilder().setModel(p.model()).setInput(Price.text(p.input()))
        .setOutput(Price.text(p.output())).setCachedInput(Price.text(p.cachedInput())).build();
  }

  private static <T> void answer(StreamObserver<T> observer, Supplier<T> work) {
    T result;
    try {
      result = work.get();
    } catch (RuntimeException e) {
      observer.onError(Statuses.of(e));
      return;
    }
    observer.onNext(result);
    observer.onCompleted();
  }

  @Override
  public void setLimit(SetLimitRequest req, StreamObserver<SetLimitResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          if (!req.hasLimit()) {
            throw new EngineException(
                EngineException.Reason.INVALID, "SetLimit needs a limit: set SetLimitRequest.limit");
          }
          LimitSpec spec = Protos.limit(req.getLimit());
          if (Templates.isPattern(spec.resource())) {
            return GrpcTemplates.set(engine, spec);
          }
          return changes
              .set(spec, dev.sluice.server.limits.LimitChanges.who(Principal.current()), req.getForce())
              .thenCompose(
                  created ->
                      engine
                          .getLimit(spec.resource())
                          .thenApply(
                              stored ->
                                  SetLimitResponse.newBuilder()
                                      .setLimit(Protos.limit(stored.orElseThrow()))
                                      .setCreated(created)
                                      .build()));
        },
        r -> r);
  }

  @Override
  public void getLimit(GetLimitRequest req, StreamObserver<Limit> observer) {
    Statuses.reply(observer, () -> GrpcTemplates.get(engine, req.getResource()), r -> r);
  }

  @Override
  public void listLimits(ListLimitsRequest req, StreamObserver<ListLimitsResponse> observer) {
    Statuses.reply(
        observer,
        () -> engine.listLimits(req.getPrefix()).thenCombine(engine.listTemplates(), (limits, templates) -> {
          ListLimitsResponse.Builder b = ListLimitsResponse.newBuilder();
          limits.forEach(l -> b.addLimits(Protos.limit(l)));
          templates.forEach(t -> b.addTemplates(Protos.limit(t)));
          return b.build();
        }),
        r -> r);
  }

  @Override
  public void deleteLimit(DeleteLimitRequest req, StreamObserver<DeleteLimitResponse> observer) {
    Statuses.reply(
        observer,
        () -> Templates.isPattern(req.getResource()) ? GrpcTemplates.delete(engine, req.getResource())
            : changes.delete(req.getResource(), dev.sluice.server.limits.LimitChanges.who(Principal.current()),
                req.getForce()),
        done -> DeleteLimitResponse.getDefaultInstance());
  }

  @Override
  public void applyLimits(ApplyLimitsRequest req, StreamObserver<ApplyLimitsResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          String source = req.getSource().isBlank() ? "the request" : clip(req.getSource());
          LimitsDocument doc;
          try {
            doc = LimitsDocument.parse(req.getDocument(), source);
          } catch (LimitsFileException e) {
            throw new EngineException(EngineException.Reason.INVALID, e.getMessage());
          }
          String who = dev.sluice.server.limits.LimitChanges.who(Principal.current()) + ", "
              + dev.sluice.server.limits.LimitChanges.file(source, doc.hash());
          return LimitsApply.plan(engine, doc, req.getPrune(), source, req.getForce()).thenCompose(plan -> {
            boolean any = plan.stream().anyMatch(c -> c.kind() != LimitsApply.Change.Kind.UNMANAGED);
            if (req.getDryRun() || !any) {
              return CompletableFuture.completedFuture(response(plan, false, doc.hash()));
            }
            return LimitsApply.apply(changes, plan, who).thenApply(done -> response(done, true, doc.hash()));
          });
        },
        r -> r);
  }

  private static ApplyLimitsResponse response(List<LimitsApply.Change> plan, boolean applied, String hash) {
    ApplyLimitsResponse.Builder b = ApplyLimitsResponse.newBuilder().setApplied(applied).setDocumentHash(hash);
    for (LimitsApply.Change c : plan) {
      b.addChanges(LimitChange.newBuilder()
          .setKind(LimitChange.Kind.valueOf(c.kind().name()))
          .setResource(c.resource())
          .addAllDetails(c.details()));
    }
    return b.build();
  }

  /** A source name as a client gave it, cut short for logs and messages. */
  private static String clip(String s) {
    String plain = s.replaceAll("[\\p{Cntrl}]", "?");
    return plain.length() > 120 ? plain.substring(0, 120) + "..." : plain;
  }

  @Override
  public void exportLimits(ExportLimitsRequest req, StreamObserver<ExportLimitsResponse> observer) {
    Statuses.reply(
        observer,
        () -> LimitsApply.current(engine),
        limits -> ExportLimitsResponse.newBuilder().setDocument(LimitsDocument.export(limits)).build());
  }

  @Override
  public void limitHistory(dev.sluice.proto.v1.LimitHistoryRequest req,
      StreamObserver<dev.sluice.proto.v1.LimitHistoryResponse> observer) {
    Statuses.reply(
        observer,
        () -> changes.history(req.getResource(), req.getLimit() == 0 ? 20 : req.getLimit()),
        entries -> {
          var b = dev.sluice.proto.v1.LimitHistoryResponse.newBuilder();
          entries.forEach(e -> b.addChanges(dev.sluice.proto.v1.LimitHistoryEntry.newBuilder()
              .setAtUnixMillis(e.atMillis()).setWho(e.who()).setAction(e.action()).addAllChanges(e.changes())));
          return b.build();
        });
  }

  @Override
  public void pause(PauseRequest req, StreamObserver<PauseResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          // Unset: until resumed. Set: the bounds of every pause (0 refused, at most a day).
          long nanos =
              req.hasDuration() ? Protos.nanos(req.getDuration(), "duration", Durations.PAUSE) : -1;
          return engine.pause(req.getResource(), nanos);
        },
        left -> {
          PauseResponse.Builder b = PauseResponse.newBuilder();
          if (left >= 0) {
            b.setPausedFor(Protos.duration(left));
          }
          return b.build();
        });
  }

  @Override
  public void resume(ResumeRequest req, StreamObserver<ResumeResponse> observer) {
    Statuses.reply(
        observer, () -> engine.resume(req.getResource()), done -> ResumeResponse.getDefaultInstance());
  }

  @Override
  public void getStats(GetStatsRequest req, StreamObserver<GetStatsResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          CompletableFuture<List<ResourceSnapshot>> all;
          if (req.getResource().isEmpty()) {
            all = engine.stats();
          } else {
            Validation.resource(req.getResource());
            all = engine.stats(req.getResource()).thenApply(List::of);
          }
          return all.thenCompose(list -> withTenants(list, !req.getResource().isEmpty()));
        },
        all -> GetStatsResponse.newBuilder().addAllResources(all).build());
  }

  /**
   * Each resource's stats, with its tenants' rows where tenants share it: recent shares from the
   * shared windows and, when {@code estimates} (one resource asked for), the engine's wait
   * estimate per tenant and lane ({@link TenantEstimates}). A read of every resource leaves the
   * estimates out: a policy may name 1 000 tenants, three estimates each, per resource.
   */
  private CompletableFuture<List<ResourceStats>> withTenants(List<ResourceSnapshot> all, boolean estimates) {
    List<CompletableFuture<ResourceStats>> each = new java.util.ArrayList<>(all.size());
    for (ResourceSnapshot s : all) {
      if (!TenantShares.hasTenants(s)) {
        each.add(CompletableFuture.completedFuture(Protos.stats(s)));
        continue;
      }
      TenantShares.View view = tenantShares.of(s);
      each.add((estimates ? TenantEstimates.of(engine, s.limit(), view)
              : CompletableFuture.completedFuture(Map.<String, Map<Lane, Long>>of()))
          .thenApply(est -> Protos.stats(s, view, est)));
    }
    return CompletableFuture.allOf(each.toArray(CompletableFuture[]::new))
        .thenApply(done -> each.stream().map(CompletableFuture::join).toList());
  }
}
