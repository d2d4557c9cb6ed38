"use strict";
var __createBinding = (this && this.__createBinding) || (Object.create ? (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    var desc = Object.getOwnPropertyDescriptor(m, k);
    if (!desc || ("get" in desc ? !m.__esModule : desc.writable || desc.configurable)) {
      desc = { enumerable: true, get: function() { return m[k]; } };
    }
    Object.defineProperty(o, k2, desc);
}) : (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    o[k2] = m[k];
}));
var __setModuleDefault = (this && this.__setModuleDefault) || (Object.create ? (function(o, v) {
    Object.defineProperty(o, "default", { enumerable: true, value: v });
}) : function(o, v) {
    o["default"] = v;
});
var __importStar = (this && this.__importStar) || (function () {
    var ownKeys = function(o) {
        ownKeys = Object.getOwnPropertyNames || function (o) {
            var ar = [];
            for (var k in o) if (Object.prototype.hasOwnProperty.call(o, k)) ar[ar.length] = k;
            return ar;
        };
        return ownKeys(o);
    };
    return function (mod) {
        if (mod && mod.__esModule) return mod;
        var result = {};
        if (mod != null) for (var k = ownKeys(mod), i = 0; i < k.length; i++) if (k[i] !== "default") __createBinding(result, mod, k[i]);
        __setModuleDefault(result, mod);
        return result;
    };
})();
var __importDefault = (this && this.__importDefault) || function (mod) {
    return (mod && mod.__esModule) ? mod : { "default": mod };
};
Object.defineProperty(exports, "__esModule", { value: true });
/*
 * End to end against a real coordinator: SLUICE_TARGET (host:port), with the limits of
 * test/limits.txt set, and SLUICE_API_KEY (a worker key for "node.*") when the coordinator has
 * keys. NodeClientIT starts one and runs this; see the README to run it against your own.
 *
 * Counts what the coordinator should have seen (grants, timeouts, aborts per resource) and
 * writes them to $SLUICE_SUMMARY, so the Java side can check them against its own counters.
 */
const strict_1 = __importDefault(require("node:assert/strict"));
const fs = __importStar(require("node:fs"));
const net = __importStar(require("node:net"));
const node_test_1 = require("node:test");
const node_perf_hooks_1 = require("node:perf_hooks");
const promises_1 = require("node:timers/promises");
const src_1 = require("../src");
const target = process.env.SLUICE_TARGET;
if (!target) {
    throw new Error('set SLUICE_TARGET=host:port of a coordinator with the limits of test/limits.txt');
}
const apiKey = process.env.SLUICE_API_KEY || undefined;
const seen = { granted: {}, timedOut: {}, cancelled: {} };
const bump = (counts, resource) => {
    counts[resource] = (counts[resource] ?? 0) + 1;
};
/** Counts every outcome the coordinator also counts; withPermit goes through acquire too. */
class CountingClient extends src_1.SluiceClient {
    acquire(resource, load = {}, options = {}) {
        return super.acquire(resource, load, options).then((permit) => {
            bump(seen.granted, resource);
            return permit;
        }, (e) => {
            if (e instanceof src_1.AcquireTimeoutError) {
                bump(seen.timedOut, resource);
            }
            else if (e instanceof src_1.AcquireAbortedError) {
                bump(seen.cancelled, resource);
            }
            throw e;
        });
    }
}
const sluice = new CountingClient({ target, apiKey });
(0, node_test_1.after)(() => {
    sluice.close();
    const line = JSON.stringify(seen);
    console.log(`SLUICE_NODE_SUMMARY ${line}`);
    if (process.env.SLUICE_SUMMARY) {
        fs.writeFileSync(process.env.SLUICE_SUMMARY, line + '\n');
    }
});
function splitTarget(t) {
    const colon = t.lastIndexOf(':');
    return [t.slice(0, colon).replace(/^\[|\]$/g, ''), Number(t.slice(colon + 1))];
}
/** Awaits `promise`, which must reject with `type`; returns the error. */
async function rejection(promise, type) {
    const e = await promise.then(() => strict_1.default.fail(`expected ${type.name}, but it succeeded`), (err) => err);
    strict_1.default.ok(e instanceof type, `expected ${type.name}, got ${String(e)}`);
    return e;
}
/** The typed error carries the coordinator's own words, and its message repeats them. */
function saysServer(e, ...words) {
    strict_1.default.ok(e.serverMessage.length > 0, 'the coordinator sent a message');
    strict_1.default.ok(e.message.includes(e.serverMessage.replace(/\.$/, '')), `message repeats the server's: ${e.message}`);
    for (const w of words) {
        strict_1.default.ok(e.serverMessage.includes(w), `server message mentions "${w}": ${e.serverMessage}`);
    }
}
(0, node_test_1.describe)('grants', { timeout: 20_000 }, () => {
    (0, node_test_1.test)('acquire returns a permit with the load charged; release ends it once', async () => {
        const permit = await sluice.acquire('node.grant', { requests: 1, tokens: 1200 }, { timeoutMs: 5_000 });
        strict_1.default.equal(permit.resource, 'node.grant');
        strict_1.default.deepEqual({ ...permit.granted }, { requests: 1, tokens: 1200 });
        strict_1.default.ok(permit.id.length > 0);
        strict_1.default.ok(permit.waitedMs >= 0);
        strict_1.default.equal(permit.leaseTtlMs, 30_000, 'the server default lease');
        strict_1.default.equal(await permit.release(), true);
        strict_1.default.equal(await permit.release(), true, 'idempotent: the first release\'s answer, no second call');
    });
    (0, node_test_1.test)('the requests default and lanes', async () => {
        for (const lane of ['interactive', 'default', 'batch']) {
            const permit = await sluice.acquire('node.grant', {}, { lane, timeoutMs: 5_000 });
            strict_1.default.deepEqual({ ...permit.granted }, { requests: 1 });
            await permit.release();
        }
    });
    (0, node_test_1.test)('withPermit returns what fn returns, and fn may release with the real usage first', async () => {
        let inside;
        const answer = await sluice.withPermit('node.grant', { requests: 1, tokens: 1200 }, async (permit) => {
            inside = permit;
            strict_1.default.equal(await permit.release({ usage: { tokens: 800 } }), true);
            return 42;
        }, { timeoutMs: 5_000 });
        strict_1.default.equal(answer, 42);
        strict_1.default.ok(inside?.released);
    });
    (0, node_test_1.test)('withPermit releases when fn throws, and rethrows fn\'s error', async () => {
        let inside;
        await strict_1.default.rejects(sluice.withPermit('node.fifo', {}, (permit) => {
            inside = permit;
            throw new Error('upstream exploded');
        }, { timeoutMs: 5_000 }), /upstream exploded/);
        strict_1.default.ok(inside?.released);
        // node.fifo allows one permit at a time: the slot is free again.
        const next = await sluice.acquire('node.fifo', {}, { timeoutMs: 0 });
        await next.release();
    });
    (0, node_test_1.test)('describe returns the limit as stored', async () => {
        const limit = await sluice.describe('node.lease');
        strict_1.default.equal(limit.resource, 'node.lease');
        strict_1.default.equal(limit.concurrency, 1);
        strict_1.default.equal(limit.leaseTtlMs, 1_000);
        strict_1.default.deepEqual(limit.rates, [{ name: 'requests', amount: 600_000, periodMs: 60_000, burst: 10_000 }]);
    });
});
(0, node_test_1.describe)('guarantees', { timeout: 30_000 }, () => {
    (0, node_test_1.test)('a concurrency cap of 2 is honoured: 8 concurrent callers, never more than 2 held', async () => {
        let held = 0;
        let most = 0;
        const calls = Array.from({ length: 8 }, (_, i) => sluice.withPermit('node.concurrency', { requests: 1 }, async () => {
            held++;
            most = Math.max(most, held);
            await (0, promises_1.setTimeout)(40);
            held--;
            return i;
        }, { timeoutMs: 15_000 }));
        strict_1.default.deepEqual(await Promise.all(calls), [0, 1, 2, 3, 4, 5, 6, 7]);
        strict_1.default.equal(most, 2, 'two at a time: the cap, and reached');
    });
    (0, node_test_1.test)('FIFO: waiters are granted in arrival order', async () => {
        const first = await sluice.acquire('node.fifo', {}, { timeoutMs: 5_000 });
        const order = [];
        const waiters = [];
        for (const name of ['b', 'c', 'd', 'e']) {
            waiters.push(sluice.acquire('node.fifo', {}, { timeoutMs: 15_000 }).then((p) => {
                order.push(name);
                return p.release().then(() => undefined);
            }));
            await (0, promises_1.setTimeout)(30); // arrival order at the coordinator is what FIFO is about
        }
        await first.release();
        await Promise.all(waiters);
        strict_1.default.deepEqual(order, ['b', 'c', 'd', 'e']);
    });
    (0, node_test_1.test)('an acquire that cannot be granted times out with AcquireTimeoutError', async () => {
        const started = node_perf_hooks_1.performance.now();
        const e = await rejection(sluice.acquire('node.never', {}, { timeoutMs: 300 }), src_1.AcquireTimeoutError);
        strict_1.default.ok(node_perf_hooks_1.performance.now() - started >= 250, 'not before its timeout');
        strict_1.default.equal(e.codeName, 'DEADLINE_EXCEEDED');
        strict_1.default.equal(e.resource, 'node.never');
        strict_1.default.ok(e.message.startsWith("acquire on resource 'node.never' failed: "), e.message);
    });
    (0, node_test_1.test)('aborting a waiting acquire rejects with AcquireAbortedError', async () => {
        const abort = new AbortController();
        const pending = sluice.acquire('node.never', {}, { timeoutMs: 10_000, signal: abort.signal });
        await (0, promises_1.setTimeout)(100);
        abort.abort();
        await rejection(pending, src_1.AcquireAbortedError);
    });
    (0, node_test_1.test)('an acquire whose signal has already fired is not sent', async () => {
        const plain = new src_1.SluiceClient({ target, apiKey }); // not counted: the coordinator never sees it
        try {
            await rejection(plain.acquire('node.never', {}, { signal: AbortSignal.abort() }), src_1.AcquireAbortedError);
        }
        finally {
            plain.close();
        }
    });
    (0, node_test_1.test)('release with usage settles: a refund is spendable at once, no refund is not', async () => {
        // node.settle: tokens 500/s, burst 1000. Take the whole bucket, then try once for 900: only a
        // refund makes it fit before 1.8 s have passed.
        const noSettle = await sluice.acquire('node.settle', { tokens: 1000 }, { timeoutMs: 10_000 });
        await noSettle.release();
        await rejection(sluice.acquire('node.settle', { tokens: 900 }, { timeoutMs: 0 }), src_1.AcquireTimeoutError);
        const settled = await sluice.acquire('node.settle', { tokens: 1000 }, { timeoutMs: 10_000 });
        strict_1.default.equal(await settled.release({ usage: { tokens: 100 } }), true);
        const refunded = await sluice.acquire('node.settle', { tokens: 900 }, { timeoutMs: 0 });
        await refunded.release();
    });
    (0, node_test_1.test)('a settle the coordinator refuses rejects, and the permit is released anyway', async () => {
        const permit = await sluice.acquire('node.fifo', {}, { timeoutMs: 5_000 });
        const e = await rejection(permit.release({ usage: { bogus: 1 } }), src_1.InvalidRequestError);
        saysServer(e, 'bogus');
        const next = await sluice.acquire('node.fifo', {}, { timeoutMs: 0 }); // the one slot is free
        await next.release();
    });
    (0, node_test_1.test)('a throttled report pauses the resource: a following acquire waits', async () => {
        await (await sluice.acquire('node.report', {}, { timeoutMs: 5_000 })).release();
        const sent = node_perf_hooks_1.performance.now(); // the pause starts after this, so it ends after sent + 800 ms
        const { pausedForMs } = await sluice.report('node.report', { throttled: true, retryAfterMs: 800 });
        strict_1.default.ok(pausedForMs > 0 && pausedForMs <= 800, `paused for ${pausedForMs} ms`);
        await rejection(sluice.acquire('node.report', {}, { timeoutMs: 0 }), src_1.AcquireTimeoutError);
        const permit = await sluice.acquire('node.report', {}, { timeoutMs: 10_000 });
        const waited = node_perf_hooks_1.performance.now() - sent;
        await permit.release();
        strict_1.default.ok(waited >= 790, `granted only once the pause ended (${Math.round(waited)} ms after the report)`);
        strict_1.default.deepEqual(await sluice.report('node.report', { remaining: { requests: 10 } }), { pausedForMs: 0 });
    });
    (0, node_test_1.test)('lease renewal keeps a permit alive well past its 1 s lease', async () => {
        const permit = await sluice.acquire('node.lease', {}, { timeoutMs: 5_000 });
        strict_1.default.equal(permit.leaseTtlMs, 1_000);
        await (0, promises_1.setTimeout)(1_500);
        // Past the lease: without renewal its slot would be free. It is not.
        await rejection(sluice.acquire('node.lease', {}, { timeoutMs: 0 }), src_1.AcquireTimeoutError);
        await (0, promises_1.setTimeout)(1_000);
        strict_1.default.equal(permit.expired, false);
        strict_1.default.equal(await permit.release(), true, 'the coordinator still knew the permit after 2.5 leases');
        const next = await sluice.acquire('node.lease', {}, { timeoutMs: 2_000 });
        await next.release();
    });
    (0, node_test_1.test)('a full waiting room fails at once with WaitingRoomFullError and a retry hint', async () => {
        const holder = await sluice.acquire('node.room', {}, { timeoutMs: 5_000 });
        const waiter = sluice.acquire('node.room', {}, { timeoutMs: 15_000 });
        await (0, promises_1.setTimeout)(100);
        const e = await rejection(sluice.acquire('node.room', {}, { timeoutMs: 15_000 }), src_1.WaitingRoomFullError);
        strict_1.default.equal(e.codeName, 'RESOURCE_EXHAUSTED');
        strict_1.default.ok(e.retryAfterMs > 0, `retry hint ${e.retryAfterMs} ms`);
        saysServer(e);
        await holder.release();
        await (await waiter).release();
    });
});
(0, node_test_1.describe)('errors', { timeout: 20_000 }, () => {
    (0, node_test_1.test)('an unknown resource: ResourceNotFoundError with the coordinator\'s message', async () => {
        const e = await rejection(sluice.acquire('node.missing', {}, { timeoutMs: 5_000 }), src_1.ResourceNotFoundError);
        strict_1.default.equal(e.codeName, 'NOT_FOUND');
        saysServer(e, "'node.missing'", 'has no limit');
        await rejection(sluice.describe('node.missing'), src_1.ResourceNotFoundError);
    });
    (0, node_test_1.test)('bad loads and names: InvalidRequestError, at once', async () => {
        saysServer(await rejection(sluice.acquire('node.grant', { tokens: -1 }), src_1.InvalidRequestError), 'out of range');
        saysServer(await rejection(sluice.acquire('node.grant', { bogus: 1 }), src_1.InvalidRequestError), "'bogus'");
        saysServer(await rejection(sluice.acquire('node.grant', { tokens: 100_001 }), src_1.InvalidRequestError), 'can never fit');
        saysServer(await rejection(sluice.acquire('node.grant', { requests: 0 }), src_1.InvalidRequestError), 'zero');
        const e = await rejection(sluice.acquire('node.bad name!', {}), src_1.InvalidRequestError);
        strict_1.default.equal(e.codeName, 'INVALID_ARGUMENT');
        saysServer(e);
    });
    (0, node_test_1.test)('what JavaScript cannot send is refused before the call', () => {
        strict_1.default.throws(() => sluice.acquire('node.grant', { tokens: 1.5 }), TypeError);
        strict_1.default.throws(() => sluice.acquire('node.grant', {}, { timeoutMs: -1 }), RangeError);
        strict_1.default.throws(() => new src_1.SluiceClient({ target: '' }), TypeError);
    });
    (0, node_test_1.test)('no coordinator: SluiceUnavailableError once the timeout is spent on retries', async () => {
        const nobody = new src_1.SluiceClient({ target: '127.0.0.1:1' });
        try {
            const e = await rejection(nobody.acquire('node.grant', {}, { timeoutMs: 300 }), src_1.SluiceUnavailableError);
            strict_1.default.equal(e.codeName, 'UNAVAILABLE');
            strict_1.default.match(e.message, /\d+ attempt\(s\)/);
        }
        finally {
            nobody.close();
        }
    });
    (0, node_test_1.test)('a connection lost while waiting: the acquire is sent again (same request id) and granted', async () => {
        // A TCP proxy in front of the coordinator that cuts its first connection while the acquire waits.
        const [host, port] = splitTarget(target);
        const sockets = [];
        const proxy = net.createServer((downstream) => {
            const upstream = net.connect(port, host);
            sockets.push(downstream, upstream);
            downstream.pipe(upstream).pipe(downstream);
            const drop = () => {
                downstream.destroy();
                upstream.destroy();
            };
            downstream.on('error', drop);
            upstream.on('error', drop);
        });
        await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
        const viaProxy = new CountingClient({ target: `127.0.0.1:${proxy.address().port}`, apiKey });
        try {
            const holder = await sluice.acquire('node.fifo', {}, { timeoutMs: 5_000 });
            const waiting = viaProxy.acquire('node.fifo', {}, { timeoutMs: 15_000 });
            await (0, promises_1.setTimeout)(300);
            strict_1.default.equal(sockets.length, 2, 'one connection so far');
            sockets.forEach((s) => s.destroy()); // the coordinator drops that waiter: it counts as cancelled
            bump(seen.cancelled, 'node.fifo');
            await (0, promises_1.setTimeout)(300); // the retry (after 50 ms) is queued again
            await holder.release();
            const permit = await waiting;
            strict_1.default.equal(sockets.length, 4, 'the retry came on a new connection');
            strict_1.default.equal(await permit.release(), true);
        }
        finally {
            viaProxy.close();
            proxy.close();
            sockets.forEach((s) => s.destroy());
        }
    });
    (0, node_test_1.test)('API keys: none or unknown → AuthenticationError; a resource the key does not cover → PermissionDeniedError', { skip: apiKey === undefined && 'SLUICE_API_KEY is not set: the coordinator is open' }, async () => {
        const anonymous = new src_1.SluiceClient({ target });
        const stranger = new src_1.SluiceClient({ target, apiKey: 'slk_000000000000_notARealSecret' });
        try {
            saysServer(await rejection(anonymous.acquire('node.grant'), src_1.AuthenticationError), 'requires an API key');
            saysServer(await rejection(stranger.acquire('node.grant'), src_1.AuthenticationError), 'unknown or revoked');
            const e = await rejection(sluice.acquire('other.resource'), src_1.PermissionDeniedError);
            strict_1.default.equal(e.codeName, 'PERMISSION_DENIED');
            saysServer(e, "'other.resource'");
        }
        finally {
            anonymous.close();
            stranger.close();
        }
    });
});
//# sourceMappingURL=client.test.js.map