package dev.sluice.bench;

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import io.netty.util.internal.ThreadExecutorMap;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The ceiling: a raw grpc-java echo service, defined without protoc (byte-array marshaller),
 * served the way Sluice's memory store is served (Netty on loopback, {@code directExecutor()},
 * the same keepalive permissions) and called over a channel built the way the SDK builds its
 * own ({@code Grpc.newChannelBuilder}, plaintext, {@code round_robin}, 10 s keepalive, the
 * default callback executor). Whatever Sluice costs above this is Sluice's.
 */
final class Echo implements AutoCloseable {

  static final String SERVICE = "sluice.bench.Echo";
  /** About the size of an Acquire request (resource, load, lane, timeout, request id). */
  static final int PAYLOAD_BYTES = 64;

  static final MethodDescriptor.Marshaller<byte[]> BYTES = new MethodDescriptor.Marshaller<>() {
    @Override
    public InputStream stream(byte[] value) {
      return new ByteArrayInputStream(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      try {
        return stream.readAllBytes();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  };

  /** A method of the echo service, bytes in and bytes out. */
  private static MethodDescriptor<byte[], byte[]> method(MethodDescriptor.MethodType type, String name) {
    return MethodDescriptor.<byte[], byte[]>newBuilder()
        .setType(type)
        .setFullMethodName(MethodDescriptor.generateFullMethodName(SERVICE, name))
        .setRequestMarshaller(BYTES)
        .setResponseMarshaller(BYTES)
        .build();
  }

  static final MethodDescriptor<byte[], byte[]> UNARY = method(MethodDescriptor.MethodType.UNARY, "Unary");

  static final MethodDescriptor<byte[], byte[]> STREAM = method(MethodDescriptor.MethodType.BIDI_STREAMING, "Stream");

  /**
   * Records of the same kind as the session's items, many per message: an 8-byte tag, then the
   * payload. The server answers every record whose tag is not 0 (an "acquire") and drops the
   * others (a "release", which the session does not answer either), all of one message in one
   * reply message.
   */
  static final MethodDescriptor<byte[], byte[]> BATCH = method(MethodDescriptor.MethodType.BIDI_STREAMING, "Batch");

  /** One record of {@link #BATCH}: the tag and the payload. */
  static final int RECORD_BYTES = Long.BYTES + PAYLOAD_BYTES;

  private final Server server;
  private final ManagedChannel channel;
  private final ManagedChannel directChannel;
  private final byte[] payload = new byte[PAYLOAD_BYTES];

  private Echo(Server server, ManagedChannel channel, ManagedChannel directChannel) {
    this.server = server;
    this.channel = channel;
    this.directChannel = directChannel;
  }

  static Echo start() throws IOException {
    ServerServiceDefinition service = ServerServiceDefinition.builder(SERVICE)
        .addMethod(UNARY, ServerCalls.asyncUnaryCall((byte[] request, StreamObserver<byte[]> reply) -> {
          reply.onNext(request);
          reply.onCompleted();
        }))
        .addMethod(STREAM, ServerCalls.asyncBidiStreamingCall(reply -> new StreamObserver<byte[]>() {
          @Override
          public void onNext(byte[] message) {
            reply.onNext(message);
          }

          @Override
          public void onError(Throwable t) {}

          @Override
          public void onCompleted() {
            reply.onCompleted();
          }
        }))
        .addMethod(BATCH, ServerCalls.asyncBidiStreamingCall(reply -> new StreamObserver<byte[]>() {
          @Override
          public void onNext(byte[] message) {
            ByteBuffer in = ByteBuffer.wrap(message);
            ByteBuffer out = ByteBuffer.allocate(message.length);
            for (int at = 0; at + RECORD_BYTES <= message.length; at += RECORD_BYTES) {
              if (in.getLong(at) != 0) {
                out.put(message, at, RECORD_BYTES);
              }
            }
            if (out.position() > 0) {
              reply.onNext(Arrays.copyOf(out.array(), out.position()));
            }
          }

          @Override
          public void onError(Throwable t) {}

          @Override
          public void onCompleted() {
            reply.onCompleted();
          }
        }))
        .build();
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .directExecutor()
        .permitKeepAliveTime(500, TimeUnit.MILLISECONDS)
        .permitKeepAliveWithoutCalls(true)
        .addService(service)
        .build()
        .start();
    String target = "127.0.0.1:" + server.getPort();
    return new Echo(server, channel(target, false), channel(target, true));
  }

  /**
   * A channel with the SDK's settings (see {@code dev.sluice.client.Targets#channel}); with
   * {@code direct}, callbacks run on the Netty event loop instead of gRPC's default executor
   * (what the SDK would get from {@code directExecutor()} on its channel).
   */
  static ManagedChannel channel(String target, boolean direct) {
    var b = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create())
        .defaultLoadBalancingPolicy("round_robin")
        .keepAliveTime(10, TimeUnit.SECONDS)
        .keepAliveTimeout(1, TimeUnit.SECONDS)
        .keepAliveWithoutCalls(true);
    if (direct) {
      b.directExecutor();
    }
    return b.build();
  }

  /** Blocking unary calls, one per thread (grpc-java runs the callback on the calling thread). */
  Workload unaryThreads(int threads) {
    return new ThreadLoop("echo-unary", threads,
        lap -> ClientCalls.blockingUnaryCall(channel, UNARY, CallOptions.DEFAULT, payload));
  }

  /**
   * {@code inFlight} async unary calls on one channel, each re-issued from its callback;
   * {@code direct}: callbacks on the event loop (client directExecutor).
   */
  Workload unaryAsync(int inFlight, boolean direct) {
    ManagedChannel ch = direct ? directChannel : channel;
    return new AsyncLoop("echo-unary", inFlight, (lap, done) ->
        ClientCalls.asyncUnaryCall(ch.newCall(UNARY, CallOptions.DEFAULT), payload, new StreamObserver<>() {
          @Override
          public void onNext(byte[] value) {}

          @Override
          public void onError(Throwable t) {
            done.accept(t);
          }

          @Override
          public void onCompleted() {
            done.accept(null);
          }
        }));
  }

  /**
   * One bidi stream with {@code window} messages outstanding: each reply sends the next message.
   * The echo answers in order, so a ring of send times gives each message its round trip.
   * {@code direct}: callbacks on the event loop (client directExecutor).
   */
  Workload stream(int window, boolean direct) {
    return new StreamLoop(window, direct ? directChannel : channel);
  }

  /**
   * {@code threads} blocking threads on one bidi stream, batched as the SDK's session batches
   * (see {@code SessionLink}): each operation queues an "acquire" record and blocks until its
   * answer, then queues a "release" record it does not wait for. A thread that queues while no
   * drain is pending hands one drain to the stream's event loop, which writes every queued record
   * in one message; the loop completes each answered record's future, waking its thread. The
   * transport's ceiling for the peers' driver (blocking threads), with no engine behind it.
   */
  Workload batchedThreads(int threads) {
    return new BatchedThreads(threads);
  }

  private final class BatchedThreads implements Workload {
    private final ThreadLoop loop;
    private final ConcurrentHashMap<Long, CompletableFuture<Void>> open = new ConcurrentHashMap<>();
    private final ConcurrentLinkedQueue<Long> queue = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean drainPending = new AtomicBoolean();
    private final AtomicLong tags = new AtomicLong();
    private final CountDownLatch ready = new CountDownLatch(1);
    private final CountDownLatch closed = new CountDownLatch(1);
    private volatile Executor eventLoop;
    private volatile Throwable failed;
    private ClientCallStreamObserver<byte[]> requests;
    private final Runnable drain = this::drain;

    BatchedThreads(int threads) {
      this.loop = new ThreadLoop("echo-batch", threads, lap -> {
        long tag = tags.incrementAndGet();
        CompletableFuture<Void> answer = new CompletableFuture<>();
        open.put(tag, answer);
        send(tag);
        try {
          answer.get(10, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
          throw new IllegalStateException("echo batch stream failed", e.getCause());
        }
        send(0L); // the release: not answered
      });
    }

    @Override
    public String driver() {
      return loop.driver();
    }

    @Override
    public void start(Meter meter) throws Exception {
      ClientCalls.asyncBidiStreamingCall(directChannel.newCall(BATCH, CallOptions.DEFAULT),
          new ClientResponseObserver<byte[], byte[]>() {
            @Override
            public void beforeStart(ClientCallStreamObserver<byte[]> stream) {
              requests = stream;
              stream.setOnReadyHandler(() -> {
                if (eventLoop == null) {
                  eventLoop = ThreadExecutorMap.currentExecutor();
                  ready.countDown();
                }
              });
            }

            @Override
            public void onNext(byte[] message) {
              ByteBuffer in = ByteBuffer.wrap(message);
              for (int at = 0; at + RECORD_BYTES <= message.length; at += RECORD_BYTES) {
                CompletableFuture<Void> answer = open.remove(in.getLong(at));
                if (answer != null) {
                  answer.complete(null);
                }
              }
            }

            @Override
            public void onError(Throwable t) {
              failed = t;
              open.values().forEach(f -> f.completeExceptionally(t));
              closed.countDown();
            }

            @Override
            public void onCompleted() {
              closed.countDown();
            }
          });
      if (!ready.await(10, TimeUnit.SECONDS) || eventLoop == null) {
        throw new IllegalStateException("the echo batch stream did not become ready on an event loop in 10 s");
      }
      loop.start(meter);
    }

    private void send(long tag) {
      queue.add(tag);
      if (drainPending.compareAndSet(false, true)) {
        eventLoop.execute(drain);
      }
    }

    /** On the event loop: every queued record in one message. */
    private void drain() {
      drainPending.set(false); // first: a record queued from now on schedules the next drain
      List<Long> queued = new ArrayList<>();
      for (Long tag = queue.poll(); tag != null; tag = queue.poll()) {
        queued.add(tag);
      }
      if (queued.isEmpty() || failed != null) {
        return;
      }
      ByteBuffer out = ByteBuffer.allocate(queued.size() * RECORD_BYTES);
      for (long tag : queued) {
        out.putLong(tag).position(out.position() + PAYLOAD_BYTES);
      }
      requests.onNext(out.array());
    }

    @Override
    public String stop() throws InterruptedException {
      String note = loop.stop();
      eventLoop.execute(requests::onCompleted);
      boolean done = closed.await(10, TimeUnit.SECONDS);
      return note != null ? note : done ? null : "echo batch stream did not close within 10 s";
    }
  }

  private final class StreamLoop implements Workload {
    private final int window;
    private final ManagedChannel ch;
    private final long[] sentAt;
    private int head;
    private int tail;
    private volatile boolean stopping;
    private boolean halfClosed; // guarded by this
    private StreamObserver<byte[]> requests;
    private final CountDownLatch closed = new CountDownLatch(1);

    StreamLoop(int window, ManagedChannel ch) {
      this.window = window;
      this.ch = ch;
      this.sentAt = new long[window + 1];
    }

    @Override
    public String driver() {
      return window == 1 ? "1 stream, 1 in flight" : "1 stream, " + window + " in flight";
    }

    @Override
    public void start(Meter meter) {
      ClientCall<byte[], byte[]> call = ch.newCall(STREAM, CallOptions.DEFAULT);
      requests = ClientCalls.asyncBidiStreamingCall(call, new StreamObserver<byte[]>() {
        @Override
        public void onNext(byte[] value) {
          long now = System.nanoTime();
          synchronized (StreamLoop.this) {
            Lap lap = new Lap(sentAt[head]);
            head = (head + 1) % sentAt.length;
            meter.done(lap, now);
            if (!stopping) {
              send();
            } else if (head == tail) {
              halfClose();
            }
          }
        }

        @Override
        public void onError(Throwable t) {
          meter.error(t);
          closed.countDown();
        }

        @Override
        public void onCompleted() {
          closed.countDown();
        }
      });
      synchronized (this) {
        for (int i = 0; i < window; i++) {
          send();
        }
      }
    }

    /** Under this monitor, once: the last reply and the stop may both find nothing outstanding. */
    private void halfClose() {
      if (!halfClosed) {
        halfClosed = true;
        requests.onCompleted();
      }
    }

    /** Under this monitor: StreamObserver.onNext must not be called concurrently. */
    private void send() {
      sentAt[tail] = System.nanoTime();
      tail = (tail + 1) % sentAt.length;
      requests.onNext(payload);
    }

    @Override
    public String stop() throws InterruptedException {
      stopping = true;
      synchronized (this) {
        if (head == tail) {
          halfClose();
        }
      }
      return closed.await(10, TimeUnit.SECONDS) ? null : "echo stream did not close within 10 s";
    }
  }

  @Override
  public void close() throws InterruptedException {
    channel.shutdownNow();
    directChannel.shutdownNow();
    server.shutdownNow();
    channel.awaitTermination(5, TimeUnit.SECONDS);
    directChannel.awaitTermination(5, TimeUnit.SECONDS);
    server.awaitTermination(5, TimeUnit.SECONDS);
  }
}
