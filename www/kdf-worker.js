// The wallet's key derivation (Argon2id, about a second) in a worker, so the page keeps
// handling input and painting meanwhile. It loads the app's own wasm bundle (whose main does
// nothing outside a window) and answers the page's request with the 32-byte key.
import init, { deriveWalletKey } from "./aqueduct.js";

const ready = init({ module_or_path: new URL("./aqueduct_bg.wasm", import.meta.url) });

self.onmessage = async (event) => {
  const { password, salt, memoryKib, iterations, parallelism } = event.data;
  try {
    await ready;
    const key = deriveWalletKey(password, salt, memoryKib, iterations, parallelism);
    self.postMessage({ key }, [key.buffer]);
  } catch (e) {
    self.postMessage({ error: String((e && e.message) || e) });
  }
};
