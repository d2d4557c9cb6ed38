package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import com.google.rpc.RetryInfo;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.SessionAcquire;
import dev.sluice.proto.v1.SessionAnswer;
import dev.sluice.proto.v1.SessionRequest;
import dev.sluice.proto.v1.SessionResponse;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RateSpec;
import io.grpc.BindableService;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The {@code Session} stream at the gRPC layer, in-process on a fake clock: batching, answers by tag, errors, the end. */
class SessionTest {

  private FakeClock clock;
  private MemoryEngine engine;
  private Server server;
  private ManagedChannel channel;
  private CoordinatorGrpc.CoordinatorStub stub;

  @BeforeEach
  void setUp() throws Exception {
    clock = new FakeClock();
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
    serve(new CoordinatorService(engine, TimeUnit.MINUTES.toNanos(5)));
  }

  private void serve(BindableService service) throws IOException {
    String name = InProcessServerBuilder.generateName();
    server = InProcessServerBuilder.forName(name).directExecutor().addService(service).build().start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    stub = CoordinatorGrpc.newStub(channel);
  }

  /**
   * Serves sessions whose answers are written on {@code loop}, as on Netty, where the in-process
   * transport has no loop.
   */
  private void serveWithLoop(Executor loop) throws IOException {
    tearDown();
    CoordinatorService service = new CoordinatorService(engine, TimeUnit.MINUTES.toNanos(5));
    serve(new CoordinatorGrpc.CoordinatorImplBase() {
      @Override
      public StreamObserver<SessionRequest> session(StreamObserver<SessionResponse> observer) {
        return new Session(service, engine, observer, loop);
      }
    });
  }

  /** An event loop that runs its tasks when the test says so. */
  private static final class ManualLoop implements Executor {
    final ArrayDeque<Runnable> tasks = new ArrayDeque<>();

    @Override
    public void execute(Runnable task) {
      tasks.add(task);
    }

    void runAll() {
      Runnable task;
      while ((task = tasks.poll()) != null) {
        task.run();
      }
    }
  }

  @AfterEach
  void tearDown() {
    channel.shutdownNow();
    server.shutdownNow();
  }

  private void limit(String name, long perSecond, long burst, long concurrency, int maxWaiting) {
    sync(engine).setLimit(new LimitSpec(name,
        List.of(new RateSpec("requests", perSecond, Duration.ofSeconds(1), burst)), concurrency, maxWaiting, null));
    clock.advance(Duration.ofSeconds(10)); // a new limit starts with empty buckets: fill them
  }

  private static SessionAcquire acquire(long tag, String resource, long requests, Duration timeout) {
    AcquireRequest.Builder r = AcquireRequest.newBuilder().setResource(resource).putLoad("requests", requests);
    if (timeout != null) {
      r.setTimeout(com.google.protobuf.Duration.newBuilder().setSeconds(timeout.toSeconds()));
    }
    return SessionAcquire.newBuilder().setTag(tag).setRequest(r).build();
  }

  private int waiting(String resource) {
    return sync(engine).stats(resource).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }

  /** Records every message and the stream's end. */
  private static final class Client implements ClientResponseObserver<SessionRequest, SessionResponse> {
    final List<SessionResponse> messages = new CopyOnWriteArrayList<>();
    volatile Status end;
    ClientCallStreamObserver<SessionRequest> call;

    @Override
    public void beforeStart(ClientCallStreamObserver<SessionRequest> requestStream) {
      call = requestStream;
    }

    @Override
    public void onNext(SessionResponse value) {
      messages.add(value);
    }

    @Override
    public void onError(Throwable t) {
      end = Status.fromThrowable(t);
    }

    @Override
    public void onCompleted() {
      end = Status.OK;
    }

    List<SessionAnswer> answers() {
      return messages.stream().flatMap(m -> m.getAnswersList().stream()).toList();
    }

    SessionAnswer answer(long tag) {
      return answers().stream().filter(a -> a.getTag() == tag).findFirst().orElseThrow(
          () -> new AssertionError("no answer for tag " + tag + " in " + answers()));
    }
  }

  private Client open() {
    Client c = new Client();
    stub.session(c);
    return c;
  }

  @Test
  void answersOfOneMessageLeaveTogetherByTagAndFailuresCarryTheUnaryStatus() {
    limit("api", 10, 3, 0, 1);
    Client c = open();
    c.call.onNext(SessionRequest.newBuilder()
        .addAcquires(acquire(7, "api", 1, null))
        .addAcquires(acquire(8, "api", 2, null))
        .addAcquires(acquire(9, "nope", 1, null))        // unknown resource
        .addAcquires(acquire(10, "api", 50, null))       // over the burst: can never fit
        .addAcquires(acquire(11, "api", 1, Duration.ofSeconds(30))) // waits: bucket is empty
        .addAcquires(acquire(12, "api", 1, Duration.ofSeconds(30))) // waiting room (1) full
        .build());

    assertThat(c.messages).as("the answers reached at once left in one message").hasSize(1);
    assertThat(c.answer(7).getGranted().getGrantedMap()).isEqualTo(Map.of("requests", 1L));
    assertThat(c.answer(8).getGranted().getGrantedMap()).isEqualTo(Map.of("requests", 2L));
    assertThat(c.answer(9).getFailed().getCode()).isEqualTo(Status.Code.NOT_FOUND.value());
    assertThat(c.answer(9).getFailed().getMessage()).contains("nope");
    assertThat(c.answer(10).getFailed().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
    SessionAnswer full = c.answer(12);
    assertThat(full.getFailed().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED.value());
    assertThat(full.getFailed().getDetailsList()).anyMatch(d -> d.is(RetryInfo.class));
    assertThat(c.answers()).noneMatch(a -> a.getTag() == 11);
    assertThat(waiting("api")).isEqualTo(1);

    clock.advance(Duration.ofMillis(100)); // one token
    assertThat(c.messages).hasSize(2);
    assertThat(c.answer(11).hasGranted()).isTrue();
    assertThat(c.answer(11).getGranted().getWaited().getNanos()).isEqualTo(100_000_000);
  }

  @Test
  void releasesAreAppliedBeforeTheAcquiresOfTheSameMessage() {
    limit("cap", 1_000, 1_000, 1, 10);
    Client c = open();
    c.call.onNext(SessionRequest.newBuilder().addAcquires(acquire(1, "cap", 1, null)).build());
    String permit = c.answer(1).getGranted().getPermitId();

    c.call.onNext(SessionRequest.newBuilder()
        .addAcquires(acquire(2, "cap", 1, Duration.ofSeconds(10)))
        .addReleases(ReleaseRequest.newBuilder().setResource("cap").setPermitId(permit))
        .build());

    assertThat(c.answer(2).hasGranted()).as("the slot freed in the same message").isTrue();
    assertThat(sync(engine).stats("cap").inFlight()).isEqualTo(1);
  }

  @Test
  void aRefusedSettleStillReleasesTheSlot() {
    limit("cap", 1_000, 1_000, 1, 10);
    Client c = open();
    c.call.onNext(SessionRequest.newBuilder().addAcquires(acquire(1, "cap", 1, null)).build());
    String permit = c.answer(1).getGranted().getPermitId();

    c.call.onNext(SessionRequest.newBuilder().addReleases(ReleaseRequest.newBuilder()
        .setResource("cap").setPermitId(permit).setSettle(true).putActual("pixels", 3)).build());

    assertThat(sync(engine).stats("cap").inFlight()).isZero();
    assertThat(c.end).as("a bad release does not end the stream").isNull();
  }

  @Test
  void aTagStillOpenCannotBeReused() {
    limit("api", 1, 1, 0, 10);
    Client c = open();
    c.call.onNext(SessionRequest.newBuilder()
        .addAcquires(acquire(1, "api", 1, null))
        .addAcquires(acquire(2, "api", 1, Duration.ofSeconds(30)))
        .addAcquires(acquire(2, "api", 1, Duration.ofSeconds(30)))
        .build());

    assertThat(c.answers()).hasSize(2);
    assertThat(c.answer(2).getFailed().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
    assertThat(c.answer(2).getFailed().getMessage()).contains("tag 2").contains("own tag");
    assertThat(waiting("api")).as("the first acquire with tag 2 still waits").isEqualTo(1);
  }

  @Test
  void theEndOfTheStreamWithdrawsItsWaitersAndLosesNoCapacity() {
    limit("api", 10, 1, 0, 100);
    Client c = open();
    SessionRequest.Builder many = SessionRequest.newBuilder().addAcquires(acquire(1, "api", 1, null));
    for (int tag = 2; tag <= 21; tag++) {
      many.addAcquires(acquire(tag, "api", 1, Duration.ofSeconds(60)));
    }
    c.call.onNext(many.build());
    assertThat(waiting("api")).isEqualTo(20);

    c.call.cancel("worker went away", null);

    assertThat(waiting("api")).isZero();
    assertThat(sync(engine).stats("api").cancelled()).isEqualTo(20);
    clock.advance(Duration.ofSeconds(1));
    assertThat(sync(engine).stats("api").available().get("requests")).as("bucket full again: nothing leaked")
        .isEqualTo(1.0);
  }

  @Test
  void halfCloseWithdrawsTheOpenAcquiresAndEndsTheStream() {
    limit("api", 1, 1, 0, 100);
    Client c = open();
    c.call.onNext(SessionRequest.newBuilder()
        .addAcquires(acquire(1, "api", 1, null))
        .addAcquires(acquire(2, "api", 1, Duration.ofSeconds(60)))
        .build());
    assertThat(waiting("api")).isEqualTo(1);

    c.call.onCompleted();

    assertThat(waiting("api")).isZero();
    assertThat(c.end).isEqualTo(Status.OK);
  }

  @Test
  void onALoopTheAnswersToEveryMessageReadBeforeItRunsLeaveInOneMessage() throws Exception {
    ManualLoop loop = new ManualLoop();
    serveWithLoop(loop);
    limit("api", 10, 3, 0, 10);
    Client c = open();
    c.call.onNext(SessionRequest.newBuilder().addAcquires(acquire(1, "api", 1, null)).build());
    c.call.onNext(SessionRequest.newBuilder()
        .addAcquires(acquire(2, "api", 1, null))
        .addAcquires(acquire(3, "nope", 1, null))
        .addAcquires(acquire(4, "api", 2, Duration.ofSeconds(30))) // one token left: waits
        .build());

    assertThat(c.messages).as("nothing is written before the loop runs").isEmpty();
    assertThat(loop.tasks).as("one drain for both messages").hasSize(1);
    loop.runAll();
    assertThat(c.messages).hasSize(1);
    assertThat(c.answers()).extracting(SessionAnswer::getTag).containsExactlyInAnyOrder(1L, 2L, 3L);
    assertThat(c.answer(3).getFailed().getCode()).isEqualTo(Status.Code.NOT_FOUND.value());

    clock.advance(Duration.ofMillis(100)); // the waiter's second token: granted off the loop
    assertThat(c.messages).as("a grant reached elsewhere is written on the loop too").hasSize(1);
    loop.runAll();
    assertThat(c.messages).hasSize(2);
    assertThat(c.answer(4).getGranted().getGrantedMap()).isEqualTo(Map.of("requests", 2L));
  }

  @Test
  void aLoopThatRefusesTheDrainLeavesTheAnswersWrittenAtOnce() throws Exception {
    serveWithLoop(task -> {
      throw new RejectedExecutionException("event loop shut down");
    });
    limit("api", 10, 3, 0, 10);
    Client c = open();
    c.call.onNext(SessionRequest.newBuilder()
        .addAcquires(acquire(1, "api", 1, null))
        .addAcquires(acquire(2, "api", 1, null))
        .build());
    c.call.onNext(SessionRequest.newBuilder().addAcquires(acquire(3, "api", 1, null)).build());

    assertThat(c.messages).as("each message's answers written when it was read").hasSize(2);
    assertThat(c.answers()).extracting(SessionAnswer::getTag).containsExactly(1L, 2L, 3L);
    assertThat(c.end).isNull();
  }
}
