package dev.sluice.server;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * An endpoint on a raw socket that frames requests itself, as RFC 9112 section 6 says: {@code
 * Transfer-Encoding: chunked} wins over {@code Content-Length}, and whatever follows a request's
 * body on a kept-alive connection is the next request. So it sees a smuggled second request where
 * a delivery lets one through. Answers every request 200 with a body echoing its headers; records
 * each request it framed.
 */
final class RawTarget implements AutoCloseable {

  /** One request as framed: its request line, its headers (names lower-cased) and body. */
  record Request(String line, Map<String, String> headers, String body) {}

  private final ServerSocket socket;
  private final List<Request> requests = new ArrayList<>();
  private final Thread acceptor;

  RawTarget() throws IOException {
    socket = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    acceptor = new Thread(this::accept, "raw-target");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  String url(String path) {
    return "http://127.0.0.1:" + socket.getLocalPort() + path;
  }

  synchronized List<Request> requests() {
    return List.copyOf(requests);
  }

  private void accept() {
    while (!socket.isClosed()) {
      try {
        Socket s = socket.accept();
        Thread t = new Thread(() -> serve(s), "raw-target-connection");
        t.setDaemon(true);
        t.start();
      } catch (IOException e) {
        return;
      }
    }
  }

  private void serve(Socket s) {
    try (s; InputStream in = s.getInputStream(); OutputStream out = s.getOutputStream()) {
      for (String line = readLine(in); line != null && !line.isEmpty(); line = readLine(in)) {
        Map<String, String> headers = new LinkedHashMap<>();
        for (String h = readLine(in); h != null && !h.isEmpty(); h = readLine(in)) {
          int colon = h.indexOf(':');
          headers.put(h.substring(0, colon).trim().toLowerCase(Locale.ROOT), h.substring(colon + 1).trim());
        }
        String body;
        if ("chunked".equalsIgnoreCase(headers.get("transfer-encoding"))) {
          ByteArrayOutputStream b = new ByteArrayOutputStream();
          for (int size = Integer.parseInt(readLine(in).trim(), 16); size > 0;
              size = Integer.parseInt(readLine(in).trim(), 16)) {
            b.write(in.readNBytes(size));
            readLine(in);
          }
          readLine(in); // the empty line after the last chunk
          body = b.toString(StandardCharsets.UTF_8);
        } else {
          int length = Integer.parseInt(headers.getOrDefault("content-length", "0"));
          body = new String(in.readNBytes(length), StandardCharsets.UTF_8);
        }
        synchronized (this) {
          requests.add(new Request(line, headers, body));
        }
        byte[] reply = headers.toString().getBytes(StandardCharsets.UTF_8);
        out.write(("HTTP/1.1 200 OK\r\nContent-Length: " + reply.length + "\r\n\r\n")
            .getBytes(StandardCharsets.US_ASCII));
        out.write(reply);
        out.flush();
      }
    } catch (IOException | RuntimeException e) {
      // the client went away, or sent what this target cannot frame: the connection ends
    }
  }

  private static String readLine(InputStream in) throws IOException {
    StringBuilder b = new StringBuilder();
    for (int c = in.read(); c != '\n'; c = in.read()) {
      if (c == -1) {
        return b.length() == 0 ? null : b.toString();
      }
      if (c != '\r') {
        b.append((char) c);
      }
    }
    return b.toString();
  }

  @Override
  public void close() throws IOException {
    socket.close();
  }
}
