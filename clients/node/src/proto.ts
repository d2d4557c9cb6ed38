import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';

/*
 * Where the contract comes from. The package carries sluice.proto in proto/sluice/v1/, copied
 * from the repository's proto module by `npm run build` (scripts/package.js), so an installed
 * package needs nothing else; SLUICE_PROTO_DIR or the protoDir option point elsewhere (another
 * version of the contract). Nothing is generated. Its two imports:
 *   google/protobuf/duration.proto  bundled with protobufjs (under @grpc/proto-loader)
 *   google/rpc/status.proto         not bundled: the package carries a verbatim copy of it (and of
 *                                   google/rpc/error_details.proto, for RetryInfo) from googleapis
 *                                   in third_party/googleapis, the same files the Java build takes
 *                                   from proto-google-common-protos. See the README for why.
 */

/** The package's root (holding package.json), whether this file runs from src/ (ts-node) or dist/src/ (tsc). */
const PACKAGE_ROOT = findPackageRoot(__dirname);
const GOOGLEAPIS = path.join(PACKAGE_ROOT, 'third_party', 'googleapis');
const SLUICE_PROTO = path.join('sluice', 'v1', 'sluice.proto');

/** `$SLUICE_PROTO_DIR` if set, else the package's own proto/ directory. */
export function defaultProtoDir(): string {
  return process.env.SLUICE_PROTO_DIR || path.join(PACKAGE_ROOT, 'proto');
}

/** How messages look in JavaScript: camelCase fields, int64 as number, enums by name, defaults filled in. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export type Callback<T> = (error: grpc.ServiceError | null, response?: T) => void;

/** The Coordinator service as grpc-js builds it from sluice.proto; only the calls this client makes. */
export interface CoordinatorStub extends grpc.Client {
  Acquire(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<AcquireResponse>): grpc.ClientUnaryCall;
  Release(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{ released: boolean }>): grpc.ClientUnaryCall;
  Renew(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<RenewResponse>): grpc.ClientUnaryCall;
  Report(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{ pausedFor: Duration | null }>): grpc.ClientUnaryCall;
  Cancel(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{ cancelled: boolean }>): grpc.ClientUnaryCall;
  Describe(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{ limit: LimitMessage | null }>): grpc.ClientUnaryCall;
  Estimate(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<EstimateResponse>): grpc.ClientUnaryCall;
}

export type CoordinatorConstructor = new (target: string, credentials: grpc.ChannelCredentials,
    options?: grpc.ChannelOptions) => CoordinatorStub;

export interface Duration {
  seconds: number;
  nanos: number;
}

export interface AcquireResponse {
  permitId: string;
  leaseTtl: Duration | null;
  granted: Record<string, number>;
  waited: Duration | null;
  /** How long the node held the call; absent from coordinators older than the field. */
  answeredAfter?: Duration | null;
  /** How long after the answer the grant stays fresh; absent when it never goes stale. */
  freshFor?: Duration | null;
  /** For a pool, the member that granted; empty (or absent, from older coordinators) for a plain resource. */
  member?: string;
}

/** sluice.v1.EstimateResponse: `wait` unset (null) while paused until resumed. */
export interface EstimateResponse {
  wait: Duration | null;
  paused: boolean;
}

export interface RenewResponse {
  leaseTtl: Duration | null;
  expired: string[];
}

export interface LimitMessage {
  resource: string;
  rates: { name: string; amount: number; period: Duration | null; burst: number }[];
  concurrency: number;
  maxWaiting: number;
  leaseTtl: Duration | null;
}

const coordinators = new Map<string, CoordinatorConstructor>();

/** The Coordinator client constructor for the sluice.proto under `protoDir`; loaded once per directory. */
export function coordinatorConstructor(protoDir: string): CoordinatorConstructor {
  let ctor = coordinators.get(protoDir);
  if (ctor === undefined) {
    if (!fs.existsSync(path.join(protoDir, SLUICE_PROTO))) {
      throw new Error(`cannot find ${SLUICE_PROTO} under ${protoDir}: `
          + (protoDir === path.join(PACKAGE_ROOT, 'proto')
            ? 'the package ships it there once built (run `npm run build` in clients/node of a Sluice checkout)'
            : 'point protoDir or SLUICE_PROTO_DIR at the directory that holds sluice/v1/sluice.proto'));
    }
    const definition = protoLoader.loadSync(SLUICE_PROTO, { ...LOADER_OPTIONS, includeDirs: [protoDir, GOOGLEAPIS] });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      sluice: { v1: { Coordinator: CoordinatorConstructor } };
    };
    ctor = loaded.sluice.v1.Coordinator;
    coordinators.set(protoDir, ctor);
  }
  return ctor;
}

let richStatus: { root: protobuf.Root; status: protobuf.Type } | undefined;

/**
 * The first detail of type `typeName` (e.g. `google.rpc.RetryInfo`) inside a
 * `grpc-status-details-bin` trailer (a serialized google.rpc.Status), as a plain object; undefined
 * when there is none.
 */
function statusDetail(statusDetails: Buffer, typeName: string): Record<string, unknown> | undefined {
  if (richStatus === undefined) {
    const root = new protobuf.Root();
    // google/protobuf/* resolve to protobufjs's bundled copies; google/rpc/* to ours.
    root.resolvePath = (_origin, target) => path.join(GOOGLEAPIS, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
    // sluice.v1.EstimateResponse, the detail of a fail-if-late refusal (fields as in sluice.proto).
    root.define('sluice.v1').add(new protobuf.Type('EstimateResponse')
        .add(new protobuf.Field('wait', 1, 'google.protobuf.Duration'))
        .add(new protobuf.Field('paused', 2, 'bool')));
    root.resolveAll();
    richStatus = { root, status: root.lookupType('google.rpc.Status') };
  }
  const decoded = richStatus.status.decode(statusDetails);
  // google.protobuf.Any is protobufjs's bundled type, whose field keeps its proto name: type_url.
  const status = richStatus.status.toObject(decoded, { longs: Number, bytes: Buffer }) as {
    details?: { type_url?: string; value?: Buffer }[];
  };
  for (const any of status.details ?? []) {
    if (any.type_url?.endsWith(`/${typeName}`) && any.value !== undefined) {
      const type = richStatus.root.lookupType(typeName);
      return type.toObject(type.decode(any.value), { longs: Number, defaults: true });
    }
  }
  return undefined;
}

/** The retry delay of the google.rpc.RetryInfo in a status-details trailer, in milliseconds; undefined when none. */
export function retryDelayMs(statusDetails: Buffer): number | undefined {
  const info = statusDetail(statusDetails, 'google.rpc.RetryInfo') as
      { retryDelay?: { seconds?: number; nanos?: number } | null } | undefined;
  return info?.retryDelay ? toMs(info.retryDelay) : undefined;
}

/** The EstimateResponse of a fail-if-late refusal in a status-details trailer; undefined when none. */
export function estimateDetail(statusDetails: Buffer): EstimateResponse | undefined {
  const e = statusDetail(statusDetails, 'sluice.v1.EstimateResponse') as
      { wait?: Duration | null; paused?: boolean } | undefined;
  return e === undefined ? undefined : { wait: e.wait ?? null, paused: e.paused === true };
}

export function toDuration(ms: number): Duration {
  const whole = Math.max(0, ms);
  const seconds = Math.floor(whole / 1000);
  const nanos = Math.min(999_999_999, Math.round((whole - seconds * 1000) * 1e6));
  return { seconds, nanos };
}

export function toMs(d: { seconds?: number; nanos?: number } | null | undefined): number {
  return d ? (d.seconds ?? 0) * 1000 + Math.round((d.nanos ?? 0) / 1e6) : 0;
}

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'third_party'))) {
      return dir;
    }
    if (path.dirname(dir) === dir) {
      throw new Error(`cannot find the sluice node package root above ${from}`);
    }
  }
}
