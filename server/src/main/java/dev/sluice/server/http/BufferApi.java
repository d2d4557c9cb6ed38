package dev.sluice.server.http;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.buffers.BufferSpec;
import dev.sluice.buffers.Buffers;
import dev.sluice.buffers.NewItem;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.auth.Role;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.List;
import java.util.Optional;
import java.util.function.BiConsumer;

/**
 * {@code /v1/buffers}: create, read, pause, resume and delete buffers (admin keys), push items and
 * read an item's status (keys that cover the buffer's pacing resource). docs/buffers.md.
 */
final class BufferApi {

  /** What a worker key may do with buffers, told when it tries an admin call. */
  private static final String WORKERS_MAY = " (a worker key covering a buffer's resource may push items to it, read"
      + " its items and read the buffer itself)";

  private final Buffers buffers;
  private final JsonApi api;

  BufferApi(Buffers buffers, JsonApi api) {
    this.buffers = buffers;
    this.api = api;
  }

  void route(Exchange x, String path, BiConsumer<Exchange, Runnable> offload) {
    if (buffers == null) {
      throw new HttpError(HttpResponseStatus.NOT_IMPLEMENTED, "UNIMPLEMENTED", "this coordinator runs without buffers"
          + " (an engine embedded without them): buffers come with every `sluice serve`, on either store");
    }
    if (path.equals("/v1/buffers")) {
      HttpApi.only(x, "GET", "POST");
      if (x.method().equals("POST")) {
        offload.accept(x, () -> {
          api.authenticate(x, "creating a buffer is an admin call" + WORKERS_MAY);
          BufferSpec spec = buffers.create(x.json());
          x.json(HttpResponseStatus.CREATED, view(spec));
        });
      } else {
        offload.accept(x, () -> {
          api.authenticate(x, "listing buffers is an admin call" + WORKERS_MAY);
          ObjectNode o = Views.JSON.createObjectNode();
          ArrayNode list = o.putArray("buffers");
          for (String name : buffers.names()) {
            buffers.get(name).ifPresent(spec -> list.add(view(spec)));
          }
          x.json(HttpResponseStatus.OK, o);
        });
      }
      return;
    }
    String rest = path.substring("/v1/buffers/".length());
    String[] parts = rest.split("/", -1);
    String name = JsonApi.decode(parts[0]);
    if (parts.length == 1) {
      HttpApi.only(x, "GET", "DELETE");
      offload.accept(x, () -> {
        if (x.method().equals("DELETE")) {
          api.authenticate(x, "deleting a buffer is an admin call" + WORKERS_MAY);
          buffers.delete(name);
          ObjectNode o = Views.JSON.createObjectNode();
          o.put("deleted", name);
          x.json(HttpResponseStatus.OK, o);
        } else {
          covers(api.authenticate(x, false), name);
          x.json(HttpResponseStatus.OK, view(spec(name)));
        }
      });
      return;
    }
    if (parts.length == 2 && (parts[1].equals("pause") || parts[1].equals("resume"))) {
      HttpApi.only(x, "POST");
      offload.accept(x, () -> {
        api.authenticate(x, parts[1] + " of a buffer is an admin call" + WORKERS_MAY);
        if (parts[1].equals("pause")) {
          buffers.pause(name);
        } else {
          buffers.resume(name);
        }
        x.json(HttpResponseStatus.OK, view(spec(name)));
      });
      return;
    }
    if (parts.length == 2 && parts[1].equals("items")) {
      HttpApi.only(x, "POST");
      offload.accept(x, () -> {
        covers(api.authenticate(x, false), name);
        var body = x.json();
        List<NewItem> items = NewItem.parsePush(body);
        boolean batch = body.has("items");
        buffers.push(name, items).whenComplete((ids, error) -> {
          if (error != null) {
            x.error(HttpError.of(error));
            return;
          }
          ObjectNode o = Views.JSON.createObjectNode();
          if (batch) {
            ArrayNode a = o.putArray("ids");
            ids.forEach(a::add);
          } else {
            o.put("id", ids.get(0));
          }
          x.json(HttpResponseStatus.ACCEPTED, o);
        });
      });
      return;
    }
    if (parts.length == 3 && parts[1].equals("items")) {
      HttpApi.only(x, "GET");
      offload.accept(x, () -> {
        Optional<Principal> who = api.authenticate(x, false);
        covers(who, name);
        boolean excerpt = who.isEmpty() || who.get().role() == Role.ADMIN || spec(name).excerptsVisibleToWorkers();
        long id;
        try {
          id = Long.parseLong(parts[2]);
        } catch (NumberFormatException e) {
          throw HttpError.badRequest("item id '" + parts[2] + "' is not a number: use the id the push answered");
        }
        x.json(HttpResponseStatus.OK, buffers.item(name, id, excerpt));
      });
      return;
    }
    throw new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", "no such endpoint: " + x.method() + " " + path
        + "; buffers take /v1/buffers, /v1/buffers/{name}, /v1/buffers/{name}/items, /v1/buffers/{name}/items/{id},"
        + " /v1/buffers/{name}/pause and /resume (docs/buffers.md)");
  }

  private BufferSpec spec(String name) {
    return buffers.get(name).orElseThrow(() -> new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND",
        "no buffer '" + name + "': create it with POST /v1/buffers, or check the name"));
  }

  /** A worker key must cover the buffer's pacing resource; admins see every buffer. */
  private void covers(Optional<Principal> who, String name) {
    if (who.isPresent()) {
      who.get().check(spec(name).pacingResource());
    }
  }

  private ObjectNode view(BufferSpec spec) {
    ObjectNode o = spec.toPublicJson();
    o.set("stats", buffers.stats(spec.name()));
    return o;
  }
}
