package dev.sluice.client;

import java.time.Duration;
import java.util.Objects;

/**
 * How one acquire waits: its timeout, lane, request id, tenant, model, and whether it fails at
 * once when it would be late. Immutable; what is not set
 * falls back to the client's defaults ({@link SluiceClient.Builder#defaultTimeout},
 * {@link SluiceClient.Builder#defaultLane}, {@link SluiceClient.Builder#defaultTenant}).
 *
 * <pre>{@code
 * AcquireOptions opts = AcquireOptions.builder().timeout(Duration.ofSeconds(2)).lane(Lane.INTERACTIVE).build();
 * }</pre>
 */
public final class AcquireOptions {

  private static final AcquireOptions DEFAULTS = new AcquireOptions(null, null, null, null, null, false);
  private static final int MAX_NAME_LENGTH = 64;

  // null means "the client's default" (no request id for requestId).
  private final Duration timeout;
  private final Lane lane;
  private final String requestId;
  private final String tenant;
  private final String model;
  private final boolean failIfLate;

  private AcquireOptions(Duration timeout, Lane lane, String requestId, String tenant, String model,
      boolean failIfLate) {
    this.timeout = timeout;
    this.lane = lane;
    this.requestId = requestId;
    this.tenant = tenant;
    this.model = model;
    this.failIfLate = failIfLate;
  }

  /** Options that set nothing: the client's default timeout and lane, no request id. */
  public static AcquireOptions defaults() {
    return DEFAULTS;
  }

  /** A builder; each value may be set once. */
  public static Builder builder() {
    return new Builder();
  }

  Duration timeout() {
    return timeout;
  }

  Lane lane() {
    return lane;
  }

  String requestId() {
    return requestId;
  }

  String tenant() {
    return tenant;
  }

  String model() {
    return model;
  }

  boolean failIfLate() {
    return failIfLate;
  }

  @Override
  public String toString() {
    return "AcquireOptions{timeout=" + (timeout == null ? "client default" : timeout)
        + ", lane=" + (lane == null ? "client default" : lane)
        + (requestId == null ? "" : ", requestId=" + requestId)
        + (tenant == null ? "" : ", tenant=" + tenant)
        + (model == null ? "" : ", model=" + model)
        + (failIfLate ? ", failIfLate" : "") + '}';
  }

  /** Builds {@link AcquireOptions}. Each setter validates at once and refuses a second call. */
  public static final class Builder {
    private Duration timeout;
    private Lane lane;
    private String requestId;
    private String tenant;
    private String model;
    private boolean failIfLate;

    private Builder() {}

    /**
     * How long the coordinator may keep the caller waiting for a grant. Zero means try once and
     * answer at once. Default: the client's {@code defaultTimeout} (30 s unless changed).
     *
     * @throws IllegalArgumentException if negative
     * @throws IllegalStateException if already set
     */
    public Builder timeout(Duration timeout) {
      Objects.requireNonNull(timeout, "timeout must not be null; leave it unset for the client default");
      if (timeout.isNegative()) {
        throw new IllegalArgumentException(
            "timeout is " + HumanDurations.format(timeout) + "; it must be >= 0 (zero means try once without waiting)");
      }
      if (this.timeout != null) {
        throw new IllegalStateException("timeout was already set to " + HumanDurations.format(this.timeout) + "; set it once");
      }
      this.timeout = timeout;
      return this;
    }

    /**
     * The priority lane. Default: the client's {@code defaultLane} ({@link Lane#DEFAULT} unless
     * changed).
     *
     * @throws IllegalStateException if already set
     */
    public Builder lane(Lane lane) {
      Objects.requireNonNull(lane, "lane must not be null; leave it unset for the client default");
      if (this.lane != null) {
        throw new IllegalStateException("lane was already set to " + this.lane + "; set it once");
      }
      this.lane = lane;
      return this;
    }

    /**
     * The caller's name for this one acquire: 1 to 64 characters of {@code A-Z a-z 0-9 . _ : -}
     * (a UUID fits). Default: the client draws a random one. It means the same on every store:
     *
     * <ul>
     *   <li>while the acquire it names still waits, an acquire with the same id takes it over in
     *       its place in line (the earlier call ends cancelled): a retry never queues twice;
     *   <li>while the permit it got is held, an acquire with the same id gets that same permit,
     *       not charged again: a retry never grants twice;
     *   <li>once that permit was released or expired, an acquire with the same id is refused
     *       ({@link InvalidRequestException}) for 60 s, after which the id is free;
     *   <li>an acquire that ended without its grant reaching the caller (timed out, cancelled)
     *       leaves the id free: the next acquire with it is a new one.
     * </ul>
     *
     * So give every logical call its own id (e.g. an order number), and reuse it only to retry
     * that call. The client itself retries with the same id when a coordinator goes away.
     *
     * @throws IllegalArgumentException if empty, longer than 64 characters, or holding another
     *     character
     * @throws IllegalStateException if already set
     */
    public Builder requestId(String requestId) {
      Objects.requireNonNull(requestId, "requestId must not be null; leave it unset for none");
      checkName("requestId", requestId, "a UUID");
      if (this.requestId != null) {
        throw new IllegalStateException("requestId was already set to '" + this.requestId + "'; set it once");
      }
      this.requestId = requestId;
      return this;
    }

    /**
     * The tenant whose share of the quota this acquire draws on (the limit's shares, floors and
     * caps, set with {@code sluice limit set --share/--floor/--cap}): 1 to 64 characters of
     * {@code A-Z a-z 0-9 . _ : -}. Default: the client's {@code defaultTenant}, else none, which the
     * coordinator counts as the tenant {@code default}. With an API key bound to a tenant the
     * key's tenant is used; naming another one fails with {@link PermissionDeniedException}.
     *
     * @throws IllegalArgumentException if empty, longer than 64 characters, or holding another
     *     character
     * @throws IllegalStateException if already set
     */
    public Builder tenant(String tenant) {
      Objects.requireNonNull(tenant, "tenant must not be null; leave it unset for the client default");
      checkName("tenant", tenant, "'search'");
      if (this.tenant != null) {
        throw new IllegalStateException("tenant was already set to '" + this.tenant + "'; set it once");
      }
      this.tenant = tenant;
      return this;
    }

    /**
     * The model the call is for, e.g. {@code gpt-4o-mini}. On a resource whose limit counts
     * {@code usd}, the coordinator charges the load's tokens ({@link Load#tokens}) at the model's
     * price ({@code sluice price set}); the permit's {@link Permit#settle} is priced the same way
     * from the actual tokens. Default: none (a load with token counts on such a resource is then
     * refused).
     *
     * @throws IllegalArgumentException if empty, longer than 200 characters, or holding a
     *     character other than {@code A-Z a-z 0-9 . _ : / @ + -}
     * @throws IllegalStateException if already set
     */
    public Builder model(String model) {
      Objects.requireNonNull(model, "model must not be null; leave it unset for none");
      if (model.isEmpty() || model.length() > 200 || !model.matches("[A-Za-z0-9._:/@+-]+")) {
        throw new IllegalArgumentException("model '" + (model.length() > 60 ? model.substring(0, 60) + "..." : model)
            + "' must be 1 to 200 characters of A-Z a-z 0-9 . _ : / @ + -, such as gpt-4o-mini");
      }
      if (this.model != null) {
        throw new IllegalStateException("model was already set to '" + this.model + "'; set it once");
      }
      this.model = model;
      return this;
    }

    /**
     * Fail at once, instead of waiting, when the coordinator estimates the grant would come after
     * the timeout (see {@link SluiceClient#estimate}), or the resource is paused until resumed:
     * the acquire then throws {@link AcquireTimeoutException} without queueing, its {@link
     * AcquireTimeoutException#estimate() estimate} and message saying how long the wait would be.
     * When the estimate fits, the acquire waits as usual and may still time out: an estimate is no
     * promise. Such a refusal is an answer, never retried on another node. For callers that
     * would rather do something else now (serve from a cache, answer "busy") than find out late.
     * Default: off, the acquire waits up to its timeout.
     *
     * @throws IllegalStateException if already set
     */
    public Builder failIfLate() {
      if (failIfLate) {
        throw new IllegalStateException("failIfLate was already set; set it once");
      }
      this.failIfLate = true;
      return this;
    }

    /** The options; the builder may be reused. */
    public AcquireOptions build() {
      return new AcquireOptions(timeout, lane, requestId, tenant, model, failIfLate);
    }
  }

  /** Refuses a request id or tenant outside 1-64 characters of {@code A-Z a-z 0-9 . _ : -}. */
  static void checkName(String field, String value, String example) {
    if (value.isEmpty() || value.length() > MAX_NAME_LENGTH) {
      throw new IllegalArgumentException(
          field + " has " + value.length() + " characters; use 1 to " + MAX_NAME_LENGTH);
    }
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
          || c == '.' || c == '_' || c == ':' || c == '-')) {
        String shown = c < 0x20 || c > 0x7e ? String.format("U+%04X", (int) c) : "'" + c + "'";
        throw new IllegalArgumentException(
            field + " holds " + shown + " at " + i + ": use A-Z a-z 0-9 . _ : - only, e.g. " + example);
      }
    }
  }
}
