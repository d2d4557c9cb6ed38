/**
 * Java SDK of the Sluice rate-limit coordinator. Start at {@link dev.sluice.client.SluiceClient}:
 *
 * <pre>{@code
 * try (SluiceClient client = SluiceClient.builder().build();
 *      Permit permit = client.acquire("openai", Load.of("requests", 1, "tokens", 1200))) {
 *   callUpstream();
 * }
 * }</pre>
 *
 * <p>Everything public is in this package; the rest is package-private. No gRPC type appears in
 * the public API except {@link dev.sluice.client.SluiceClient.Builder#channel}, a hook for tests
 * and custom transports.
 */
package dev.sluice.client;
