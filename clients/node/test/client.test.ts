/*
 * End to end against a real coordinator: SLUICE_TARGET (host:port), with the limits of
 * test/limits.txt set, and SLUICE_API_KEY (a worker key for "node.*") when the coordinator has
 * keys. NodeClientIT starts one and runs this; see the README to run it against your own.
 *
 * Counts what the coordinator should have seen (grants, timeouts, aborts per resource) and
 * writes them to $SLUICE_SUMMARY, so the Java side can check them against its own counters.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { after, describe, test } from 'node:test';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AcquireOptions, AcquireAbortedError, AcquireTimeoutError, AuthenticationError, InvalidRequestError,
  type Load, Permit, PermissionDeniedError, ResourceNotFoundError, SluiceClient, SluiceError,
  SluiceUnavailableError, WaitingRoomFullError,
} from '../src';

const target = process.env.SLUICE_TARGET;
if (!target) {
  throw new Error('set SLUICE_TARGET=host:port of a coordinator with the limits of test/limits.txt');
}
const apiKey = process.env.SLUICE_API_KEY || undefined;
/** A worker key for "node.*" bound to the tenant "search" (NodeClientIT makes one). */
const tenantKey = process.env.SLUICE_TENANT_KEY || undefined;

type Counts = Record<string, number>;
const seen = { granted: {} as Counts, timedOut: {} as Counts, cancelled: {} as Counts };
const bump = (counts: Counts, resource: string) => {
  counts[resource] = (counts[resource] ?? 0) + 1;
};

/** Counts every outcome the coordinator also counts; withPermit goes through acquire too. */
class CountingClient extends SluiceClient {
  override acquire(resource: string, load: Load = {}, options: AcquireOptions = {}): Promise<Permit> {
    return super.acquire(resource, load, options).then(
      (permit) => {
        bump(seen.granted, permit.member); // the coordinator counts a pool's grants on the member
        return permit;
      },
      (e: unknown) => {
        if (e instanceof AcquireTimeoutError) {
          bump(seen.timedOut, resource);
        } else if (e instanceof AcquireAbortedError) {
          bump(seen.cancelled, resource);
        }
        throw e;
      });
  }
}

const sluice = new CountingClient({ target, apiKey });

after(() => {
  sluice.close();
  const line = JSON.stringify(seen);
  console.log(`SLUICE_NODE_SUMMARY ${line}`);
  if (process.env.SLUICE_SUMMARY) {
    fs.writeFileSync(process.env.SLUICE_SUMMARY, line + '\n');
  }
});

function splitTarget(t: string): [string, number] {
  const colon = t.lastIndexOf(':');
  return [t.slice(0, colon).replace(/^\[|\]$/g, ''), Number(t.slice(colon + 1))];
}

/** Awaits `promise`, which must reject with `type`; returns the error. */
async function rejection<E extends SluiceError>(promise: Promise<unknown>, type: new (...a: never[]) => E): Promise<E> {
  const e = await promise.then(() => assert.fail(`expected ${type.name}, but it succeeded`), (err: unknown) => err);
  assert.ok(e instanceof type, `expected ${type.name}, got ${String(e)}`);
  return e;
}

/** The typed error carries the coordinator's own words, and its message repeats them. */
function saysServer(e: SluiceError, ...words: string[]): void {
  assert.ok(e.serverMessage.length > 0, 'the coordinator sent a message');
  assert.ok(e.message.includes(e.serverMessage.replace(/\.$/, '')), `message repeats the server's: ${e.message}`);
  for (const w of words) {
    assert.ok(e.serverMessage.includes(w), `server message mentions "${w}": ${e.serverMessage}`);
  }
}

/**
 * A TCP proxy in front of the coordinator, and a client through it: what the client sends goes
 * straight through, what the coordinator sends goes through `forward`.
 */
async function startProxy(forward: (chunk: Buffer, downstream: net.Socket) => void) {
  const [host, port] = splitTarget(target!);
  const sockets: net.Socket[] = [];
  const proxy = net.createServer((downstream) => {
    const upstream = net.connect(port, host);
    sockets.push(downstream, upstream);
    downstream.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => forward(chunk, downstream));
    const drop = () => {
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', drop);
    upstream.on('error', drop);
    upstream.on('close', drop); // as a pipe would end it
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const viaProxy = new CountingClient({ target: `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`, apiKey });
  return { proxy, sockets, viaProxy };
}

describe('grants', { timeout: 20_000 }, () => {
  test('acquire returns a permit with the load charged; release ends it once', async () => {
    const permit = await sluice.acquire('node.grant', { requests: 1, tokens: 1200 }, { timeoutMs: 5_000 });
    assert.equal(permit.resource, 'node.grant');
    assert.equal(permit.member, 'node.grant', 'a plain resource grants itself');
    assert.deepEqual({ ...permit.granted }, { requests: 1, tokens: 1200 });
    assert.ok(permit.id.length > 0);
    assert.ok(permit.waitedMs >= 0);
    assert.equal(permit.leaseTtlMs, 30_000, 'the server default lease');
    assert.equal(await permit.release(), true);
    assert.equal(await permit.release(), true, 'idempotent: the first release\'s answer, no second call');
  });

  test('the requests default and lanes', async () => {
    for (const lane of ['interactive', 'default', 'batch'] as const) {
      const permit = await sluice.acquire('node.grant', {}, { lane, timeoutMs: 5_000 });
      assert.deepEqual({ ...permit.granted }, { requests: 1 });
      await permit.release();
    }
  });

  test('withPermit returns what fn returns, and fn may release with the real usage first', async () => {
    let inside: Permit | undefined;
    const answer = await sluice.withPermit('node.grant', { requests: 1, tokens: 1200 }, async (permit) => {
      inside = permit;
      assert.equal(await permit.release({ usage: { tokens: 800 } }), true);
      return 42;
    }, { timeoutMs: 5_000 });
    assert.equal(answer, 42);
    assert.ok(inside?.released);
  });

  test('withPermit releases when fn throws, and rethrows fn\'s error', async () => {
    let inside: Permit | undefined;
    await assert.rejects(sluice.withPermit('node.fifo', {}, (permit) => {
      inside = permit;
      throw new Error('upstream exploded');
    }, { timeoutMs: 5_000 }), /upstream exploded/);
    assert.ok(inside?.released);
    // node.fifo allows one permit at a time: the slot is free again.
    const next = await sluice.acquire('node.fifo', {}, { timeoutMs: 0 });
    await next.release();
  });

  test('a pool\'s permits name the member that granted; releasing frees that member', async () => {
    // node.pool (NodeClientIT makes it): members node.pool.a and node.pool.b, one permit at a time each.
    const first = await sluice.acquire('node.pool', { tokens: 10 }, { timeoutMs: 5_000 });
    const second = await sluice.acquire('node.pool', { tokens: 10 }, { timeoutMs: 5_000 });
    assert.deepEqual([first.member, second.member].sort(), ['node.pool.a', 'node.pool.b']);
    assert.equal(first.resource, 'node.pool');
    await first.release();
    const third = await sluice.acquire('node.pool', { tokens: 10 }, { timeoutMs: 5_000 });
    assert.equal(third.member, first.member, 'the member the first freed');
    await second.release();
    await third.release();
  });

  test('a model prices the tokens of the acquire and of the settle (a limit that counts usd)', async () => {
    // node.usd counts usd; NodeClientIT prices node-model at $1/M input and $2/M output tokens.
    const permit = await sluice.acquire('node.usd', { input_tokens: 1_000, output_tokens: 500 },
        { model: 'node-model', timeoutMs: 5_000 });
    assert.equal(permit.granted.usd, 2_000, '1 000 x $1/M + 500 x $2/M, in micro-dollars');
    // Without the model the coordinator could not price the usage, and would refuse the settle.
    assert.equal(await permit.release({ usage: { input_tokens: 1_000, output_tokens: 100 } }), true);
    assert.throws(() => sluice.acquire('node.usd', { input_tokens: 1 }, { model: 'no spaces allowed' }),
        /model must be 1-200 characters/);
  });

  test('describe returns the limit as stored', async () => {
    const limit = await sluice.describe('node.lease');
    assert.equal(limit.resource, 'node.lease');
    assert.equal(limit.concurrency, 1);
    assert.equal(limit.leaseTtlMs, 1_000);
    assert.deepEqual(limit.rates, [{ name: 'requests', amount: 600_000, periodMs: 60_000, burst: 10_000 }]);
  });
});

describe('guarantees', { timeout: 30_000 }, () => {
  test('a concurrency cap of 2 is honoured: 8 concurrent callers, never more than 2 held', async () => {
    let held = 0;
    let most = 0;
    const calls = Array.from({ length: 8 }, (_, i) =>
      sluice.withPermit('node.concurrency', { requests: 1 }, async () => {
        held++;
        most = Math.max(most, held);
        await sleep(40);
        held--;
        return i;
      }, { timeoutMs: 15_000 }));
    assert.deepEqual(await Promise.all(calls), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(most, 2, 'two at a time: the cap, and reached');
  });

  test('FIFO: waiters are granted in arrival order', async () => {
    const first = await sluice.acquire('node.fifo', {}, { timeoutMs: 5_000 });
    const order: string[] = [];
    const waiters: Promise<void>[] = [];
    for (const name of ['b', 'c', 'd', 'e']) {
      waiters.push(sluice.acquire('node.fifo', {}, { timeoutMs: 15_000 }).then((p) => {
        order.push(name);
        return p.release().then(() => undefined);
      }));
      await sleep(30); // arrival order at the coordinator is what FIFO is about
    }
    await first.release();
    await Promise.all(waiters);
    assert.deepEqual(order, ['b', 'c', 'd', 'e']);
  });

  test('an acquire that cannot be granted times out with AcquireTimeoutError', async () => {
    const started = performance.now();
    const e = await rejection(sluice.acquire('node.never', {}, { timeoutMs: 300 }), AcquireTimeoutError);
    assert.ok(performance.now() - started >= 250, 'not before its timeout');
    assert.equal(e.codeName, 'DEADLINE_EXCEEDED');
    assert.equal(e.resource, 'node.never');
    assert.ok(e.message.startsWith("acquire on resource 'node.never' failed: "), e.message);
  });

  test('aborting a waiting acquire rejects with AcquireAbortedError', async () => {
    const abort = new AbortController();
    const pending = sluice.acquire('node.never', {}, { timeoutMs: 10_000, signal: abort.signal });
    await sleep(100);
    abort.abort();
    await rejection(pending, AcquireAbortedError);
  });

  test('an acquire whose signal has already fired is not sent', async () => {
    const plain = new SluiceClient({ target, apiKey }); // not counted: the coordinator never sees it
    try {
      await rejection(plain.acquire('node.never', {}, { signal: AbortSignal.abort() }), AcquireAbortedError);
    } finally {
      plain.close();
    }
  });

  test('release with usage settles: a refund is spendable at once, no refund is not', async () => {
    // node.settle: tokens 500/s, burst 1000. Take the whole bucket, then try once for 900: only a
    // refund makes it fit before 1.8 s have passed.
    const noSettle = await sluice.acquire('node.settle', { tokens: 1000 }, { timeoutMs: 10_000 });
    await noSettle.release();
    await rejection(sluice.acquire('node.settle', { tokens: 900 }, { timeoutMs: 0 }), AcquireTimeoutError);

    const settled = await sluice.acquire('node.settle', { tokens: 1000 }, { timeoutMs: 10_000 });
    assert.equal(await settled.release({ usage: { tokens: 100 } }), true);
    const refunded = await sluice.acquire('node.settle', { tokens: 900 }, { timeoutMs: 0 });
    await refunded.release();
  });

  test('a settle the coordinator refuses rejects, and the permit is released anyway', async () => {
    const permit = await sluice.acquire('node.fifo', {}, { timeoutMs: 5_000 });
    const e = await rejection(permit.release({ usage: { bogus: 1 } }), InvalidRequestError);
    saysServer(e, 'bogus');
    const next = await sluice.acquire('node.fifo', {}, { timeoutMs: 0 }); // the one slot is free
    await next.release();
  });

  test('a throttled report pauses the resource: a following acquire waits', async () => {
    await (await sluice.acquire('node.report', {}, { timeoutMs: 5_000 })).release();
    const sent = performance.now(); // the pause starts after this, so it ends after sent + 800 ms
    const { pausedForMs } = await sluice.report('node.report', { throttled: true, retryAfterMs: 800 });
    assert.ok(pausedForMs > 0 && pausedForMs <= 800, `paused for ${pausedForMs} ms`);
    await rejection(sluice.acquire('node.report', {}, { timeoutMs: 0 }), AcquireTimeoutError);
    const permit = await sluice.acquire('node.report', {}, { timeoutMs: 10_000 });
    const waited = performance.now() - sent;
    await permit.release();
    assert.ok(waited >= 790, `granted only once the pause ended (${Math.round(waited)} ms after the report)`);
    assert.deepEqual(await sluice.report('node.report', { remaining: { requests: 10 } }), { pausedForMs: 0 });
  });

  test('a report with the provider\'s limits sets a learning limit\'s rates', async () => {
    const perMinute = async () => Object.fromEntries((await sluice.describe('node.learn')).rates
        .map((r) => [r.name, (r.amount * 60_000) / r.periodMs]));
    assert.deepEqual(await perMinute(), { requests: 600_000, tokens: 60_000_000 });
    await sluice.report('node.learn', { remaining: { tokens: 39_000 }, limits: { requests: 500, tokens: 40_000 } });
    assert.deepEqual(await perMinute(), { requests: 500, tokens: 40_000 });
    await assert.rejects(sluice.report('node.learn', { limits: { tokens: 1.5 } }), /limits tokens=1.5 is not a safe integer/);
  });

  test('lease renewal keeps a permit alive well past its 1 s lease', async () => {
    const permit = await sluice.acquire('node.lease', {}, { timeoutMs: 5_000 });
    assert.equal(permit.leaseTtlMs, 1_000);
    await sleep(1_500);
    // Past the lease: without renewal its slot would be free. It is not.
    await rejection(sluice.acquire('node.lease', {}, { timeoutMs: 0 }), AcquireTimeoutError);
    await sleep(1_000);
    assert.equal(permit.expired, false);
    assert.equal(await permit.release(), true, 'the coordinator still knew the permit after 2.5 leases');
    const next = await sluice.acquire('node.lease', {}, { timeoutMs: 2_000 });
    await next.release();
  });

  test('a full waiting room fails at once with WaitingRoomFullError and a retry hint', async () => {
    const holder = await sluice.acquire('node.room', {}, { timeoutMs: 5_000 });
    const waiter = sluice.acquire('node.room', {}, { timeoutMs: 15_000 });
    await sleep(100);
    const e = await rejection(sluice.acquire('node.room', {}, { timeoutMs: 15_000 }), WaitingRoomFullError);
    assert.equal(e.codeName, 'RESOURCE_EXHAUSTED');
    assert.ok(e.retryAfterMs > 0, `retry hint ${e.retryAfterMs} ms`);
    saysServer(e);
    await holder.release();
    await (await waiter).release();
  });
});

describe('wait estimates', { timeout: 20_000 }, () => {
  test('estimate says when an acquire would be granted, without queueing it', async () => {
    // node.never refills 1 request an hour and started empty: the next one is most of an hour away.
    const never = await sluice.estimate('node.never', { requests: 1 });
    assert.equal(never.paused, false);
    assert.ok(never.waitMs !== null && never.waitMs > 60_000 && never.waitMs <= 3_600_000, `waitMs ${never.waitMs}`);
    const batch = await sluice.estimate('node.never', {}, { lane: 'batch', tenant: 'search' });
    assert.ok(batch.waitMs !== null && batch.waitMs > 60_000, `waitMs ${batch.waitMs}`);
    assert.throws(() => sluice.estimate('node.never', {}, { lane: 'urgent' as never }), /lane must be one of/);
    assert.throws(() => sluice.estimate('node.never', {}, { tenant: 'no spaces' }), /tenant must be 1-64/);
    saysServer(await rejection(sluice.estimate('node.missing'), ResourceNotFoundError), 'has no limit');
    saysServer(await rejection(sluice.estimate('node.grant', { tokens: 100_001 }), InvalidRequestError),
        'can never fit');
  });

  test('failIfLate: refused at once with the estimate when it is past the timeout, else granted', async () => {
    // Not counted: a refusal before queueing is no timeout at the coordinator.
    const plain = new SluiceClient({ target, apiKey });
    try {
      const e = await rejection(plain.acquire('node.never', {}, { timeoutMs: 10_000, failIfLate: true }),
          AcquireTimeoutError);
      assert.equal(e.codeName, 'DEADLINE_EXCEEDED');
      saysServer(e, "the estimated wait on 'node.never' is", 'past the 10 s timeout', 'failIfLate');
      assert.equal(e.estimate?.paused, false);
      assert.ok(e.estimate?.waitMs !== undefined && e.estimate.waitMs! > 60_000, `estimate ${e.estimate?.waitMs}`);
    } finally {
      plain.close();
    }
    const permit = await sluice.acquire('node.grant', { requests: 1 }, { timeoutMs: 10_000, failIfLate: true });
    await permit.release();
    assert.throws(() => sluice.acquire('node.grant', {}, { failIfLate: 'yes' as never }), /failIfLate must be true/);
  });

  test('a key bound to a tenant estimates in its name and may not name another',
    { skip: tenantKey === undefined && 'SLUICE_TENANT_KEY is not set' }, async () => {
      const bound = new SluiceClient({ target, apiKey: tenantKey });
      try {
        assert.equal((await bound.estimate('node.grant', { requests: 1 }, { tenant: 'search' })).paused, false);
        const e = await rejection(bound.estimate('node.grant', { requests: 1 }, { tenant: 'ads' }), PermissionDeniedError);
        saysServer(e, "bound to tenant 'search'");
      } finally {
        bound.close();
      }
    });
});

describe('errors', { timeout: 20_000 }, () => {
  test('an unknown resource: ResourceNotFoundError with the coordinator\'s message', async () => {
    const e = await rejection(sluice.acquire('node.missing', {}, { timeoutMs: 5_000 }), ResourceNotFoundError);
    assert.equal(e.codeName, 'NOT_FOUND');
    saysServer(e, "'node.missing'", 'has no limit');
    await rejection(sluice.describe('node.missing'), ResourceNotFoundError);
  });

  test('bad loads and names: InvalidRequestError, at once', async () => {
    saysServer(await rejection(sluice.acquire('node.grant', { tokens: -1 }), InvalidRequestError), 'out of range');
    saysServer(await rejection(sluice.acquire('node.grant', { bogus: 1 }), InvalidRequestError), "'bogus'");
    saysServer(await rejection(sluice.acquire('node.grant', { tokens: 100_001 }), InvalidRequestError),
        'can never fit');
    saysServer(await rejection(sluice.acquire('node.grant', { requests: 0 }), InvalidRequestError), 'zero');
    const e = await rejection(sluice.acquire('node.bad name!', {}), InvalidRequestError);
    assert.equal(e.codeName, 'INVALID_ARGUMENT');
    saysServer(e);
  });

  test('what JavaScript cannot send is refused before the call', () => {
    assert.throws(() => sluice.acquire('node.grant', { tokens: 1.5 }), TypeError);
    assert.throws(() => sluice.acquire('node.grant', {}, { timeoutMs: -1 }), RangeError);
    assert.throws(() => new SluiceClient({ target: '' }), TypeError);
  });

  test('no coordinator: SluiceUnavailableError once the timeout is spent on retries', async () => {
    const nobody = new SluiceClient({ target: '127.0.0.1:1' });
    try {
      const e = await rejection(nobody.acquire('node.grant', {}, { timeoutMs: 300 }), SluiceUnavailableError);
      assert.equal(e.codeName, 'UNAVAILABLE');
      assert.match(e.message, /\d+ attempt\(s\)/);
    } finally {
      nobody.close();
    }
  });

  test('a connection lost while waiting: the acquire is sent again (same request id) and granted', async () => {
    // A TCP proxy in front of the coordinator that cuts its first connection while the acquire waits.
    const { proxy, sockets, viaProxy } = await startProxy((chunk, downstream) => downstream.write(chunk));
    try {
      const holder = await sluice.acquire('node.fifo', {}, { timeoutMs: 5_000 });
      const waiting = viaProxy.acquire('node.fifo', {}, { timeoutMs: 15_000 });
      await sleep(300);
      assert.equal(sockets.length, 2, 'one connection so far');
      sockets.forEach((s) => s.destroy()); // the coordinator drops that waiter: it counts as cancelled
      bump(seen.cancelled, 'node.fifo');
      await sleep(300); // the retry (after 50 ms) is queued again
      await holder.release();
      const permit = await waiting;
      assert.equal(sockets.length, 4, 'the retry came on a new connection');
      assert.equal(await permit.release(), true);
    } finally {
      viaProxy.close();
      proxy.close();
      sockets.forEach((s) => s.destroy());
    }
  });

  test('grants held back on the way are confirmed, not handed over in a bunch', async () => {
    // A proxy that can hold what the coordinator sends, then let it through at once (a network
    // that heals). node.late: 10/s, burst 1, so a grant stays fresh 50 ms.
    let holding = false;
    const held: Array<() => void> = [];
    const { proxy, sockets, viaProxy } = await startProxy((chunk, downstream) => {
      if (holding) {
        held.push(() => downstream.write(chunk));
      } else {
        downstream.write(chunk);
      }
    });
    try {
      for (let i = 0; i < 3; i++) { // answers that come straight through set what "on time" means
        await (await viaProxy.acquire('node.late', {}, { timeoutMs: 5_000 })).release();
      }
      assert.equal(viaProxy.lateGrants, 0);
      holding = true;
      const waiting = [0, 1, 2, 3].map(() => viaProxy.acquire('node.late', {}, { timeoutMs: 15_000 }));
      await sleep(900); // the coordinator grants the four at 10/s into the hold
      holding = false;
      held.splice(0).forEach((write) => write());
      const permits = await Promise.all(waiting);
      assert.equal(viaProxy.lateGrants, 4, 'each held-back grant is confirmed');
      assert.equal(new Set(permits.map((p) => p.id)).size, 4);
      for (const p of permits) {
        assert.equal(await p.release(), true);
      }
      // The four held back were granted once more each (forfeited, then served at the rate).
      for (let i = 0; i < viaProxy.lateGrants; i++) {
        bump(seen.granted, 'node.late');
      }
    } finally {
      viaProxy.close();
      proxy.close();
      sockets.forEach((s) => s.destroy());
    }
  });

  test('a tenant is sent with the acquire: granted in its name; a bad name is refused before the call', async () => {
    const permit = await sluice.acquire('node.grant', { requests: 1 }, { tenant: 'search' });
    await permit.release();
    const defaulted = new CountingClient({ target, apiKey, defaultTenant: 'batch-jobs' });
    try {
      await (await defaulted.acquire('node.grant', { requests: 1 })).release();
    } finally {
      defaulted.close();
    }
    assert.throws(() => sluice.acquire('node.grant', {}, { tenant: 'no spaces' }), /tenant must be 1-64 characters/);
    assert.throws(() => new SluiceClient({ target, defaultTenant: '' }), /defaultTenant must be 1-64 characters/);
  });

  test('a key bound to a tenant: its own or none is granted, another tenant → PermissionDeniedError',
    { skip: tenantKey === undefined && 'SLUICE_TENANT_KEY is not set' }, async () => {
      const bound = new CountingClient({ target, apiKey: tenantKey });
      const otherDefault = new CountingClient({ target, apiKey: tenantKey, defaultTenant: 'ads' });
      try {
        await (await bound.acquire('node.grant', { requests: 1 })).release();
        await (await bound.acquire('node.grant', { requests: 1 }, { tenant: 'search' })).release();
        const e = await rejection(bound.acquire('node.grant', { requests: 1 }, { tenant: 'ads' }), PermissionDeniedError);
        saysServer(e, "bound to tenant 'search'", "tenant 'ads'");
        await rejection(otherDefault.acquire('node.grant', { requests: 1 }), PermissionDeniedError);
      } finally {
        bound.close();
        otherDefault.close();
      }
    });

  test('API keys: none or unknown → AuthenticationError; a resource the key does not cover → PermissionDeniedError',
    { skip: apiKey === undefined && 'SLUICE_API_KEY is not set: the coordinator is open' }, async () => {
      const anonymous = new SluiceClient({ target });
      const stranger = new SluiceClient({ target, apiKey: 'slk_000000000000_notARealSecret' });
      try {
        saysServer(await rejection(anonymous.acquire('node.grant'), AuthenticationError), 'requires an API key');
        saysServer(await rejection(stranger.acquire('node.grant'), AuthenticationError), 'unknown or revoked');
        const e = await rejection(sluice.acquire('other.resource'), PermissionDeniedError);
        assert.equal(e.codeName, 'PERMISSION_DENIED');
        saysServer(e, "'other.resource'");
      } finally {
        anonymous.close();
        stranger.close();
      }
    });
});
