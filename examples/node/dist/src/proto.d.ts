import * as grpc from '@grpc/grpc-js';
/** The repository's proto/src/main/proto, two levels above this package. */
export declare function defaultProtoDir(): string;
export type Callback<T> = (error: grpc.ServiceError | null, response?: T) => void;
/** The Coordinator service as grpc-js builds it from sluice.proto; only the calls this client makes. */
export interface CoordinatorStub extends grpc.Client {
    Acquire(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<AcquireResponse>): grpc.ClientUnaryCall;
    Release(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{
        released: boolean;
    }>): grpc.ClientUnaryCall;
    Renew(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<RenewResponse>): grpc.ClientUnaryCall;
    Report(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{
        pausedFor: Duration | null;
    }>): grpc.ClientUnaryCall;
    Cancel(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{
        cancelled: boolean;
    }>): grpc.ClientUnaryCall;
    Describe(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{
        limit: LimitMessage | null;
    }>): grpc.ClientUnaryCall;
}
export type CoordinatorConstructor = new (target: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => CoordinatorStub;
export interface Duration {
    seconds: number;
    nanos: number;
}
export interface AcquireResponse {
    permitId: string;
    leaseTtl: Duration | null;
    granted: Record<string, number>;
    waited: Duration | null;
}
export interface RenewResponse {
    leaseTtl: Duration | null;
    expired: string[];
}
export interface LimitMessage {
    resource: string;
    rates: {
        name: string;
        amount: number;
        period: Duration | null;
        burst: number;
    }[];
    concurrency: number;
    maxWaiting: number;
    leaseTtl: Duration | null;
}
/** The Coordinator client constructor for the sluice.proto under `protoDir`; loaded once per directory. */
export declare function coordinatorConstructor(protoDir: string): CoordinatorConstructor;
/**
 * The retry delay of the google.rpc.RetryInfo inside a `grpc-status-details-bin` trailer (a
 * serialized google.rpc.Status), in milliseconds; undefined when there is none.
 */
export declare function retryDelayMs(statusDetails: Buffer): number | undefined;
export declare function toDuration(ms: number): Duration;
export declare function toMs(d: {
    seconds?: number;
    nanos?: number;
} | null | undefined): number;
