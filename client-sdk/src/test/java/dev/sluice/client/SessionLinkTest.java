package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.SessionAcquire;
import dev.sluice.proto.v1.SessionAnswer;
import dev.sluice.proto.v1.SessionRequest;
import dev.sluice.proto.v1.SessionResponse;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executor;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * How {@link SessionLink} turns acquires and releases into request messages, in-process: the
 * transport's event loop (which in-process has none) is played by an executor the test runs.
 */
class SessionLinkTest {

  /** Records every request message; grants every acquire at once. */
  private static final class Coordinator extends CoordinatorGrpc.CoordinatorImplBase {
    final List<SessionRequest> messages = new CopyOnWriteArrayList<>();

    @Override
    public StreamObserver<SessionRequest> session(StreamObserver<SessionResponse> out) {
      return new StreamObserver<>() {
        @Override
        public void onNext(SessionRequest message) {
          messages.add(message);
          SessionResponse.Builder answers = SessionResponse.newBuilder();
          for (SessionAcquire a : message.getAcquiresList()) {
            answers.addAnswers(SessionAnswer.newBuilder().setTag(a.getTag()).setGranted(
                AcquireResponse.newBuilder().setPermitId("p" + a.getTag()).putGranted("requests", 1)));
          }
          out.onNext(answers.build());
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {
          out.onCompleted();
        }
      };
    }
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

  /** Waits for one answer. */
  private static final class Waiter implements SessionLink.Waiter {
    volatile AcquireResponse granted;
    volatile Throwable failed;

    @Override
    public long giveUpAt() {
      return Long.MAX_VALUE;
    }

    @Override
    public String resource() {
      return "api";
    }

    @Override
    public void onNext(AcquireResponse value) {
      granted = value;
    }

    @Override
    public void onError(Throwable t) {
      failed = t;
    }

    @Override
    public void onCompleted() {}
  }

  private final Coordinator coordinator = new Coordinator();
  // Runs only the once-a-second sweep, which passes over these waiters (no deadline).
  private final ScheduledExecutorService scheduler = Executors.newSingleThreadScheduledExecutor();
  private Server server;
  private ManagedChannel channel;
  private Fixture fixture;
  private SessionLink link;

  @BeforeEach
  void setUp() throws Exception {
    String name = InProcessServerBuilder.generateName();
    server = InProcessServerBuilder.forName(name).directExecutor().addService(coordinator).build().start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    fixture = new Fixture(); // its client only stands in for the owner of late grants
  }

  @AfterEach
  void tearDown() throws Exception {
    if (link != null) {
      link.close();
    }
    fixture.close();
    channel.shutdownNow();
    server.shutdownNow();
    scheduler.shutdownNow();
  }

  private SessionLink link(Executor loop) {
    link = new SessionLink(fixture.client.runtime(), CoordinatorGrpc.newStub(channel), 1, scheduler,
        System::nanoTime, () -> loop);
    link.openAll();
    return link;
  }

  private static AcquireRequest request(String id) {
    return AcquireRequest.newBuilder().setResource("api").putLoad("requests", 1).setRequestId(id).build();
  }

  private static ReleaseRequest release(String permit) {
    return ReleaseRequest.newBuilder().setResource("api").setPermitId(permit).build();
  }

  @Test
  void onTheTransportsLoopEverythingQueuedBeforeItRunsLeavesInOneMessage() {
    ManualLoop loop = new ManualLoop();
    SessionLink link = link(loop);
    Waiter a = new Waiter();
    Waiter b = new Waiter();
    Waiter c = new Waiter();
    link.acquire(request("a"), a);
    link.acquire(request("b"), b);
    assertThat(link.release(release("earlier"))).isTrue();
    link.acquire(request("c"), c);

    assertThat(coordinator.messages).as("nothing is written before the loop runs").isEmpty();
    assertThat(loop.tasks).as("one drain for all of them").hasSize(1);
    loop.runAll();
    assertThat(coordinator.messages).hasSize(1);
    SessionRequest message = coordinator.messages.get(0);
    assertThat(message.getAcquiresList()).extracting(x -> x.getRequest().getRequestId())
        .containsExactly("a", "b", "c");
    assertThat(message.getReleasesList()).extracting(ReleaseRequest::getPermitId).containsExactly("earlier");
    assertThat(List.of(a, b, c)).allMatch(w -> w.granted != null && w.failed == null);

    assertThat(link.release(release(a.granted.getPermitId()))).isTrue();
    assertThat(coordinator.messages).hasSize(1);
    loop.runAll();
    assertThat(coordinator.messages).as("what is queued after a drain gets a drain of its own").hasSize(2);
    assertThat(coordinator.messages.get(1).getReleasesList()).extracting(ReleaseRequest::getPermitId)
        .containsExactly(a.granted.getPermitId());
  }

  @Test
  void aLoopThatRefusesTheDrainLeavesEachItemWrittenAtOnce() {
    SessionLink link = link(task -> {
      throw new RejectedExecutionException("event loop shut down");
    });
    Waiter a = new Waiter();
    link.acquire(request("a"), a);
    assertThat(link.release(release("earlier"))).isTrue();

    assertThat(coordinator.messages).hasSize(2);
    assertThat(a.granted).isNotNull();
  }
}
