// The app's background worker: the long computations a page must not wait on — the wallet's
// key derivation (Argon2id) and the re-execution or sampling of a job's result. It loads the
// app's own wasm bundle (whose main does nothing outside a window) and answers one request:
//   {kind: "kdf", password, salt, memoryKib, iterations, parallelism} → {result: key bytes}
//   {kind: "check", task: encoded check} → {progress: {done, total}}…, then {result: bytes}
// or {error, check?} where `check` names a verification that failed.
import init, { deriveWalletKey, checkJobResult } from "./aqueduct.js";

const ready = init({ module_or_path: new URL("./aqueduct_bg.wasm", import.meta.url) });

self.onmessage = async (event) => {
  const request = event.data;
  try {
    await ready;
    let result;
    if (request.kind === "kdf") {
      const { password, salt, memoryKib, iterations, parallelism } = request;
      result = deriveWalletKey(password, salt, memoryKib, iterations, parallelism);
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
