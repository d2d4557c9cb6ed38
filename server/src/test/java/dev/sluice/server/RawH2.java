package dev.sluice.server;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.handler.codec.http2.DefaultHttp2Headers;
import io.netty.handler.codec.http2.DefaultHttp2HeadersDecoder;
import io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder;
import io.netty.handler.codec.http2.Http2Headers;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Map;

/**
 * An HTTP/2 client written by hand on a plain socket, for attacks a well-behaved library will not
 * make: streams beyond the advertised limit, floods of resets, oversized headers, half-sent
 * messages. Frames are read back one at a time; the server's SETTINGS are acknowledged as read.
 */
final class RawH2 implements AutoCloseable {

  static final int DATA = 0;
  static final int HEADERS = 1;
  static final int RST_STREAM = 3;
  static final int SETTINGS = 4;
  static final int PING = 6;
  static final int GOAWAY = 7;
  static final int WINDOW_UPDATE = 8;
  static final int SETTINGS_MAX_CONCURRENT_STREAMS = 3;

  /** One frame as read; {@code headers} is decoded for HEADERS frames. */
  record Frame(int type, int flags, int stream, byte[] payload, Http2Headers headers) {
    int errorCode() {
      ByteBuffer b = ByteBuffer.wrap(payload);
      return type == GOAWAY ? b.getInt(4) : b.getInt(0);
    }

    /** A setting's value in a SETTINGS frame, or -1. */
    long setting(int id) {
      ByteBuffer b = ByteBuffer.wrap(payload);
      while (b.remaining() >= 6) {
        int key = b.getShort() & 0xffff;
        long value = b.getInt() & 0xffffffffL;
        if (key == id) {
          return value;
        }
      }
      return -1;
    }
  }

  private final Socket socket;
  private final OutputStream out;
  private final DataInputStream in;
  private final DefaultHttp2HeadersEncoder encoder = new DefaultHttp2HeadersEncoder();
  private final DefaultHttp2HeadersDecoder decoder = new DefaultHttp2HeadersDecoder(false, 1 << 20);

  RawH2(int port) throws IOException {
    socket = new Socket("127.0.0.1", port);
    socket.setTcpNoDelay(true);
    out = socket.getOutputStream();
    in = new DataInputStream(socket.getInputStream());
  }

  /** The client preface and an empty SETTINGS frame: from here the server sees an HTTP/2 client. */
  RawH2 preface() throws IOException {
    out.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
    frame(SETTINGS, 0, 0, new byte[0]);
    return this;
  }

  void frame(int type, int flags, int stream, byte[] payload) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(9 + payload.length);
    b.put((byte) (payload.length >>> 16)).put((byte) (payload.length >>> 8)).put((byte) payload.length);
    b.put((byte) type).put((byte) flags).putInt(stream).put(payload);
    out.write(b.array());
  }

  /** Opens a gRPC call on {@code stream} (odd, rising): POST to {@code path} with extra headers. */
  void headers(int stream, String path, Map<String, String> extra, boolean endStream) throws IOException {
    Http2Headers h = new DefaultHttp2Headers().method("POST").scheme("http").path(path).authority("localhost")
        .set("content-type", "application/grpc").set("te", "trailers");
    extra.forEach(h::set);
    ByteBuf buf = Unpooled.buffer();
    try {
      encoder.encodeHeaders(stream, h, buf);
      byte[] block = new byte[buf.readableBytes()];
      buf.readBytes(block);
      int max = 16_384;
      for (int off = 0; off < block.length || off == 0; off += max) {
        byte[] part = java.util.Arrays.copyOfRange(block, off, Math.min(block.length, off + max));
        boolean last = off + max >= block.length;
        int flags = (last ? 0x4 : 0) | (off == 0 && endStream ? 0x1 : 0);
        frame(off == 0 ? HEADERS : 9 /* CONTINUATION */, flags, stream, part);
        if (last) {
          break;
        }
      }
    } catch (io.netty.handler.codec.http2.Http2Exception e) {
      throw new IOException(e);
    } finally {
      buf.release();
    }
  }

  /** A gRPC message frame announcing {@code declared} bytes but carrying only {@code sent} of them. */
  void partialMessage(int stream, int declared, int sent) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(5 + sent);
    b.put((byte) 0).putInt(declared);
    frame(DATA, 0, stream, b.array());
  }

  void rst(int stream) throws IOException {
    frame(RST_STREAM, 0, stream, ByteBuffer.allocate(4).putInt(8 /* CANCEL */).array());
  }

  void flush() throws IOException {
    out.flush();
  }

  /** The next frame, or null once the server closed the connection or nothing came in time. */
  Frame read(Duration timeout) throws IOException {
    socket.setSoTimeout((int) Math.max(1, timeout.toMillis()));
    try {
      int length = in.readUnsignedByte() << 16 | in.readUnsignedByte() << 8 | in.readUnsignedByte();
      int type = in.readUnsignedByte();
      int flags = in.readUnsignedByte();
      int stream = in.readInt() & 0x7fffffff;
      byte[] payload = new byte[length];
      in.readFully(payload);
      Http2Headers headers = null;
      if (type == HEADERS) {
        ByteBuf buf = Unpooled.wrappedBuffer(payload);
        try {
          headers = decoder.decodeHeaders(stream, buf);
        } catch (io.netty.handler.codec.http2.Http2Exception e) {
          throw new IOException(e);
        }
      }
      if (type == SETTINGS && (flags & 1) == 0) {
        frame(SETTINGS, 1, 0, new byte[0]);
        out.flush();
      }
      return new Frame(type, flags, stream, payload, headers);
    } catch (EOFException | SocketTimeoutException e) {
      return null;
    } catch (SocketException e) {
      return null; // reset by the server
    }
  }

  /** Reads frames until the server closes the connection (true) or {@code timeout} passes (false). */
  boolean closedWithin(Duration timeout) throws IOException {
    long end = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < end) {
      socket.setSoTimeout((int) Math.max(1, (end - System.nanoTime()) / 1_000_000));
      try {
        if (in.read() < 0) {
          return true;
        }
      } catch (SocketTimeoutException e) {
        return false;
      } catch (SocketException e) {
        return true;
      }
    }
    return false;
  }

  @Override
  public void close() throws IOException {
    socket.close();
  }
}
