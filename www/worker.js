// The background worker of the app and of the SDK's package: the long computations a page must
// not wait on (the app's page bundle does not even contain them) — the wallet's key derivation
// (Argon2id), the validation and instrumentation of a job module, the re-execution or
// sampling of a job's result, and a referee's re-runs. It answers one request:
//   {kind: "kdf", password, salt, memoryKib, iterations, parallelism} → {result: key bytes}
//   {kind: "prepare", module} → {result: the encoded prepared module}
//   {kind: "check", task: encoded check} → {progress: {done, total}}…, then {result: bytes}
//   {kind: "rerun", task: encoded re-run} → {result: the encoded initial state or step}
// or {error, check?} where `check` names a verification that failed. `./aqueduct_worker.js` is
// the app's worker bundle; in the SDK's package it re-exports the SDK's own bundle, which has the
// same four functions (client_core::worker_exports!).
import init, {
  deriveWalletKey,
  prepareJobModule,
  checkJobResult,
  rerunJobSegment,
} from "./aqueduct_worker.js";

// The bindings load their wasm from beside themselves.
const ready = init();

self.onmessage = async (event) => {
  const request = event.data;
  try {
    await ready;
    let result;
    if (request.kind === "kdf") {
      const { password, salt, memoryKib, iterations, parallelism } = request;
      result = deriveWalletKey(password, salt, memoryKib, iterations, parallelism);
    } else if (request.kind === "prepare") {
      result = prepareJobModule(request.module);
    } else if (request.kind === "rerun") {
      result = rerunJobSegment(request.task);
    } else if (request.kind === "check") {
      result = checkJobResult(request.task, (progress) => self.postMessage({ progress }));
    } else {
      throw new Error(`unknown request ${request.kind}`);
    }
    self.postMessage({ result }, [result.buffer]);
  } catch (e) {
    self.postMessage({ error: String((e && e.message) || e), check: e && e.check });
  }
};
