/*
 * How failures read, without a coordinator: grpc-js errors as the coordinator and the transport
 * send them, mapped by mapError. Every message gives its advice once.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { Writer } from 'protobufjs';
import {
  AcquireTimeoutError, AuthenticationError, InvalidRequestError, ResourceNotFoundError, SluiceUnavailableError,
  WaitingRoomFullError, humanMs, mapError,
} from '../src/errors';

function grpcError(code: Status, details: string): ServiceError {
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), { code, details, metadata: new Metadata() });
}

/** How many times `text` holds one of the advice words. */
function adviceCount(text: string): number {
  return (text.match(/\b(retry|wait longer|create it|create a limit|check the name|fix the|configure|lower the|pass one|use an|resume it)\b/gi) ?? [])
    .length;
}

describe('errors say their advice once', () => {
  const coordinatorSays: [Status, string, new (...a: never[]) => Error][] = [
    [Status.NOT_FOUND, "resource 'x' has no limit: create it with `sluice limit set x --rate requests=N/min` or check"
        + ' the name', ResourceNotFoundError],
    [Status.INVALID_ARGUMENT, "load of 'tokens' is 9000, above its burst of 4000: it can never fit; lower the load"
        + ' or raise the burst', InvalidRequestError],
    [Status.DEADLINE_EXCEEDED, "not granted on 'x' within 2 s: the resource is paused by an admin until resumed;"
        + ' resume it (sluice resume x) to grant again', AcquireTimeoutError],
    [Status.RESOURCE_EXHAUSTED, "waiting room of 'x' is full (3 waiting, max 3): retry after the hinted delay, or"
        + ' raise --max-waiting', WaitingRoomFullError],
    [Status.UNAUTHENTICATED, 'this coordinator requires an API key: pass one with SLUICE_API_KEY',
      AuthenticationError],
    [Status.UNAVAILABLE, 'coordinator is shutting down: retry on another node or after it restarts',
      SluiceUnavailableError],
  ];
  for (const [code, said, type] of coordinatorSays) {
    test(`${Status[code]} from the coordinator: its words, its advice, once`, () => {
      const e = mapError(grpcError(code, said), 'acquire', 'x');
      assert.ok(e instanceof type, `${type.name}: ${e}`);
      assert.ok(e.message.startsWith(`acquire on resource 'x' failed: ${said}`), e.message);
      assert.equal(adviceCount(e.message), adviceCount(said), `advice repeated: ${e.message}`);
    });
  }

  test('a timeout says nothing was granted, a full room for how long to wait', () => {
    assert.match(mapError(grpcError(Status.DEADLINE_EXCEEDED, coordinatorSays[2][1]), 'acquire', 'x').message,
        /to grant again\. Nothing was granted$/);
    assert.match(mapError(grpcError(Status.RESOURCE_EXHAUSTED, coordinatorSays[3][1]), 'acquire', 'x').message,
        /raise --max-waiting\. The hinted delay is 1 s$/);
  });

  test('the transport\'s words advise nothing: the client advises, once', () => {
    const e = mapError(grpcError(Status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED'),
        'acquire', 'x');
    assert.ok(e instanceof SluiceUnavailableError);
    assert.match(e.message, /ECONNREFUSED\. The coordinator could not be reached or could not serve the call; retry,/);
    assert.equal(adviceCount(e.message), 1, e.message);
  });

  test('no message from the coordinator: the client advises', () => {
    const e = mapError(grpcError(Status.NOT_FOUND, ''), 'describe', 'x');
    assert.equal(e.message, "describe on resource 'x' failed: NOT_FOUND. Create a limit for 'x' with the admin CLI,"
        + ' or check the name');
  });
});

/** A grpc-js error whose status-details trailer holds one google.rpc.Status detail of `typeUrl`. */
function richError(code: Status, details: string, typeUrl: string, value: Uint8Array): ServiceError {
  const w = Writer.create().uint32(8).int32(code).uint32(18).string(details);
  w.uint32(26).fork().uint32(10).string(`type.googleapis.com/${typeUrl}`).uint32(18).bytes(value).ldelim();
  const e = grpcError(code, details);
  e.metadata.set('grpc-status-details-bin', Buffer.from(w.finish()));
  return e;
}

/** A message whose field 1 is a google.protobuf.Duration of 2.5 s (RetryInfo, EstimateResponse), then `more`. */
function withDuration(more: (w: Writer) => Writer = (w) => w): Uint8Array {
  return more(Writer.create().uint32(10).fork().uint32(8).int64(2).uint32(16).int32(500_000_000).ldelim()).finish();
}

describe('what the status details carry', () => {
  test('the RetryInfo of a full waiting room is its hint', () => {
    const e = mapError(richError(Status.RESOURCE_EXHAUSTED, 'full', 'google.rpc.RetryInfo', withDuration()),
        'acquire', 'x');
    assert.ok(e instanceof WaitingRoomFullError);
    assert.equal(e.retryAfterMs, 2500);
  });

  test('a failIfLate refusal carries its estimate; a plain timeout none', () => {
    const late = mapError(richError(Status.DEADLINE_EXCEEDED, 'late', 'sluice.v1.EstimateResponse', withDuration()),
        'acquire', 'x');
    assert.ok(late instanceof AcquireTimeoutError);
    assert.deepEqual(late.estimate, { waitMs: 2500, paused: false });
    const paused = mapError(richError(Status.DEADLINE_EXCEEDED, 'paused', 'sluice.v1.EstimateResponse',
        Writer.create().uint32(16).bool(true).finish()), 'acquire', 'x') as AcquireTimeoutError;
    assert.deepEqual(paused.estimate, { waitMs: null, paused: true });
    assert.equal((mapError(grpcError(Status.DEADLINE_EXCEEDED, 'slow'), 'acquire', 'x') as AcquireTimeoutError)
        .estimate, undefined);
  });
});

describe('durations read as a person writes them', () => {
  test('humanMs', () => {
    assert.deepEqual([0, 0.4, 218.6, 999.4, 999.6, 1500, 2000, 42_400, 200_000, 7_500_000].map(humanMs),
        ['0 s', '1 ms', '219 ms', '999 ms', '1 s', '1.5 s', '2 s', '42 s', '3m 20s', '2h 5m']);
  });
});
