export {
  SluiceClient, Permit, type Load, type Lane, type SluiceClientOptions, type AcquireOptions, type ReleaseOptions,
  type ReportOptions, type TlsOptions, type Limit, type RateLimit, type EstimateOptions,
} from './client';
export {
  SluiceError, InvalidRequestError, ResourceNotFoundError, AcquireTimeoutError, WaitingRoomFullError,
  AuthenticationError, PermissionDeniedError, SluiceUnavailableError, AcquireAbortedError, type WaitEstimate,
} from './errors';
