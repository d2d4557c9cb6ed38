"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.AcquireAbortedError = exports.SluiceUnavailableError = exports.PermissionDeniedError = exports.AuthenticationError = exports.WaitingRoomFullError = exports.AcquireTimeoutError = exports.ResourceNotFoundError = exports.InvalidRequestError = exports.SluiceError = exports.Permit = exports.SluiceClient = void 0;
var client_1 = require("./client");
Object.defineProperty(exports, "SluiceClient", { enumerable: true, get: function () { return client_1.SluiceClient; } });
Object.defineProperty(exports, "Permit", { enumerable: true, get: function () { return client_1.Permit; } });
var errors_1 = require("./errors");
Object.defineProperty(exports, "SluiceError", { enumerable: true, get: function () { return errors_1.SluiceError; } });
Object.defineProperty(exports, "InvalidRequestError", { enumerable: true, get: function () { return errors_1.InvalidRequestError; } });
Object.defineProperty(exports, "ResourceNotFoundError", { enumerable: true, get: function () { return errors_1.ResourceNotFoundError; } });
Object.defineProperty(exports, "AcquireTimeoutError", { enumerable: true, get: function () { return errors_1.AcquireTimeoutError; } });
Object.defineProperty(exports, "WaitingRoomFullError", { enumerable: true, get: function () { return errors_1.WaitingRoomFullError; } });
Object.defineProperty(exports, "AuthenticationError", { enumerable: true, get: function () { return errors_1.AuthenticationError; } });
Object.defineProperty(exports, "PermissionDeniedError", { enumerable: true, get: function () { return errors_1.PermissionDeniedError; } });
Object.defineProperty(exports, "SluiceUnavailableError", { enumerable: true, get: function () { return errors_1.SluiceUnavailableError; } });
Object.defineProperty(exports, "AcquireAbortedError", { enumerable: true, get: function () { return errors_1.AcquireAbortedError; } });
//# sourceMappingURL=index.js.map