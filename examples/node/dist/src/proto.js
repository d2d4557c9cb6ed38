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
Object.defineProperty(exports, "__esModule", { value: true });
exports.defaultProtoDir = defaultProtoDir;
exports.coordinatorConstructor = coordinatorConstructor;
exports.retryDelayMs = retryDelayMs;
exports.toDuration = toDuration;
exports.toMs = toMs;
const fs = __importStar(require("node:fs"));
const path = __importStar(require("node:path"));
const grpc = __importStar(require("@grpc/grpc-js"));
const protoLoader = __importStar(require("@grpc/proto-loader"));
const protobuf = __importStar(require("protobufjs"));
/*
 * Where the contract comes from. sluice.proto is read from the repository's proto/ module as it
 * is: nothing is generated or copied. Its two imports:
 *   google/protobuf/duration.proto  bundled with protobufjs (under @grpc/proto-loader)
 *   google/rpc/status.proto         not bundled: the package carries a verbatim copy of it (and of
 *                                   google/rpc/error_details.proto, for RetryInfo) from googleapis
 *                                   in third_party/googleapis, the same files the Java build takes
 *                                   from proto-google-common-protos. See the README for why.
 */
/** examples/node, whether this file runs from src/ (ts-node) or dist/src/ (tsc). */
const PACKAGE_ROOT = findPackageRoot(__dirname);
const GOOGLEAPIS = path.join(PACKAGE_ROOT, 'third_party', 'googleapis');
const SLUICE_PROTO = path.join('sluice', 'v1', 'sluice.proto');
/** The repository's proto/src/main/proto, two levels above this package. */
function defaultProtoDir() {
    return process.env.SLUICE_PROTO_DIR
        ?? path.resolve(PACKAGE_ROOT, '..', '..', 'proto', 'src', 'main', 'proto');
}
/** How messages look in JavaScript: camelCase fields, int64 as number, enums by name, defaults filled in. */
const LOADER_OPTIONS = {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
};
const coordinators = new Map();
/** The Coordinator client constructor for the sluice.proto under `protoDir`; loaded once per directory. */
function coordinatorConstructor(protoDir) {
    let ctor = coordinators.get(protoDir);
    if (ctor === undefined) {
        if (!fs.existsSync(path.join(protoDir, SLUICE_PROTO))) {
            throw new Error(`cannot find ${SLUICE_PROTO} under ${protoDir}: run from a Sluice checkout (the package`
                + ' reads proto/src/main/proto two levels up), or pass protoDir / set SLUICE_PROTO_DIR');
        }
        const definition = protoLoader.loadSync(SLUICE_PROTO, { ...LOADER_OPTIONS, includeDirs: [protoDir, GOOGLEAPIS] });
        const loaded = grpc.loadPackageDefinition(definition);
        ctor = loaded.sluice.v1.Coordinator;
        coordinators.set(protoDir, ctor);
    }
    return ctor;
}
let richStatus;
/**
 * The retry delay of the google.rpc.RetryInfo inside a `grpc-status-details-bin` trailer (a
 * serialized google.rpc.Status), in milliseconds; undefined when there is none.
 */
function retryDelayMs(statusDetails) {
    if (richStatus === undefined) {
        const root = new protobuf.Root();
        // google/protobuf/* resolve to protobufjs's bundled copies; google/rpc/* to ours.
        root.resolvePath = (_origin, target) => path.join(GOOGLEAPIS, target);
        root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
        richStatus = { status: root.lookupType('google.rpc.Status'), retryInfo: root.lookupType('google.rpc.RetryInfo') };
    }
    const decoded = richStatus.status.decode(statusDetails);
    const status = richStatus.status.toObject(decoded, { longs: Number, bytes: Buffer });
    for (const any of status.details ?? []) {
        if (any.typeUrl?.endsWith('/google.rpc.RetryInfo') && any.value !== undefined) {
            const info = richStatus.retryInfo.toObject(richStatus.retryInfo.decode(any.value), { longs: Number });
            if (info.retryDelay !== undefined) {
                return toMs(info.retryDelay);
            }
        }
    }
    return undefined;
}
function toDuration(ms) {
    const whole = Math.max(0, ms);
    const seconds = Math.floor(whole / 1000);
    const nanos = Math.min(999_999_999, Math.round((whole - seconds * 1000) * 1e6));
    return { seconds, nanos };
}
function toMs(d) {
    return d ? (d.seconds ?? 0) * 1000 + Math.round((d.nanos ?? 0) / 1e6) : 0;
}
function findPackageRoot(from) {
    for (let dir = from;; dir = path.dirname(dir)) {
        if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'third_party'))) {
            return dir;
        }
        if (path.dirname(dir) === dir) {
            throw new Error(`cannot find the sluice node package root above ${from}`);
        }
    }
}
//# sourceMappingURL=proto.js.map