package dev.sluice.server.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.price.Price;
import dev.sluice.server.price.Prices;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.Optional;
import java.util.function.BiConsumer;

/**
 * {@code /v1/prices}: the price table, admin keys only (as the gRPC Admin service's SetPrice,
 * ListPrices and DeletePrice). {@code GET /v1/prices} lists, {@code GET|PUT|DELETE
 * /v1/prices/{model}} reads, sets and deletes one; a price is US dollars per million tokens.
 */
final class PriceApi {

  private static final String ADMIN_CALL = "prices are admin calls";

  private final Prices prices;
  private final JsonApi api;

  PriceApi(Prices prices, JsonApi api) {
    this.prices = prices;
    this.api = api;
  }

  void route(Exchange x, String path, BiConsumer<Exchange, Runnable> offload) {
    if (prices == null) {
      throw new HttpError(HttpResponseStatus.NOT_IMPLEMENTED, "UNIMPLEMENTED", "this coordinator runs without a price"
          + " table (an engine embedded without one): prices come with every `sluice serve`, on either store");
    }
    if (path.equals("/v1/prices")) {
      HttpApi.only(x, "GET");
      offload.accept(x, () -> {
        api.authenticate(x, ADMIN_CALL);
        ObjectNode o = Views.JSON.createObjectNode();
        ArrayNode list = o.putArray("prices");
        prices.list().forEach(p -> list.add(view(p)));
        x.json(HttpResponseStatus.OK, o);
      });
      return;
    }
    String model = JsonApi.decode(path.substring("/v1/prices/".length()));
    HttpApi.only(x, "GET", "PUT", "DELETE");
    offload.accept(x, () -> {
      Optional<Principal> who = api.authenticate(x, ADMIN_CALL);
      String by = who.map(p -> "key " + p.keyId()).orElse("open coordinator") + ", HTTP port";
      switch (x.method()) {
        case "GET" -> {
          Price p = prices.get(Price.model(model)).orElseThrow(() -> new HttpError(HttpResponseStatus.NOT_FOUND,
              "NOT_FOUND", "model '" + model + "' has no price: set one with PUT /v1/prices/" + model
                  + " {\"input\": 0.15, \"output\": 0.60}"));
          x.json(HttpResponseStatus.OK, view(p));
        }
        case "PUT" -> {
          JsonNode body = x.json();
          JsonApi.known(body, "input", "output", "cachedInput");
          Price p = Price.parse(model, amount(body, "input"), amount(body, "output"), amount(body, "cachedInput"));
          prices.set(p, by);
          x.json(HttpResponseStatus.OK, view(p));
        }
        default -> {
          prices.delete(Price.model(model), by);
          ObjectNode o = Views.JSON.createObjectNode();
          o.put("model", model);
          o.put("deleted", true);
          x.json(HttpResponseStatus.OK, o);
        }
      }
    });
  }

  /** A price field: a JSON number ({@code 0.15}) or text ({@code "0.15/M"}); null when absent. */
  private static String amount(JsonNode body, String field) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return null;
    }
    if (v.isNumber()) {
      return v.decimalValue().toPlainString();
    }
    return JsonApi.text(v, field);
  }

  static ObjectNode view(Price p) {
    ObjectNode o = Views.JSON.createObjectNode();
    o.put("model", p.model());
    o.put("input", p.input());
    o.put("output", p.output());
    o.put("cachedInput", p.cachedInput());
    o.put("unit", "USD per million tokens");
    return o;
  }
}
