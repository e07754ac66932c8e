// The README's quick start, type-checked against the package's declarations by
// `cargo xtask test` (tsc --strict): if the API or its declarations drift apart, this fails.
import init, {
  Client,
  Wallet,
  type AqueductError,
  type ConnectionState,
  type JobResult,
  type Proven,
  type AccountView,
  type ChannelView,
  type TxResult,
  type FraudReport,
  type FraudTxResult,
} from "./aqueduct-sdk/aqueduct_sdk.js";

export async function quickstart(genesis: string, module: Uint8Array): Promise<string> {
  await init();
  const client: Client = await Client.connect({
    relay: "https://relay.example:8080",
    genesis,
    onState: (s: ConnectionState) => console.log(s.state, s.rttMs ?? "", s.reason ?? ""),
  });
  const id: number = client.subscribe((s) => console.log(s.relay, s.state));
  client.unsubscribe(id);

  const wallet: Wallet = await Wallet.create("a long password");
  const stored: string = wallet.backup();
  const again: Wallet = await Wallet.unlock(stored, "a long password");
  const restored: Wallet = await Wallet.restore(again.recoveryPhrase(), "another password");
  restored.free();

  // Paying the relay's provider: a channel opened from the faucet's funds.
  const offer = (await client.offers()).value.find((o) => o.provider === client.relay);
  let paidFrom = "";
  if (offer && offer.pricePerMfuel !== "0") {
    const drawn: TxResult = await client.faucet(wallet, {
      onProgress: (p) => console.log(p.stage, p.detail),
    });
    const opened: TxResult = await client.openChannel(wallet, {
      provider: offer.provider,
      amount: "20000",
    });
    const channels: Proven<ChannelView[]> = await client.channels(wallet.account);
    paidFrom = `${drawn.height} ${opened.channel ?? ""} ${channels.value.map((c) => c.available)}`;
  }

  const abort = new AbortController();
  let result: JobResult;
  try {
    result = await client.runJob(wallet, {
      module,
      input: "2000000",
      fuelLimit: 5_000_000_000,
      maxSteps: 1000,
      signal: abort.signal,
      onProgress: (p) => console.log(p.stage, p.detail, p.fraction ?? 0),
    });
  } catch (e) {
    const err = e as AqueductError;
    if (err.kind === "verification") return `the relay lied: ${err.check ?? ""}`;
    throw err;
  }
  const v = result.verification;
  const strength: number = v.caughtIfFaking5Percent ?? 1;
  const account: Proven<AccountView> = await client.account(wallet.account);
  const offers = await client.offers();
  const dao = await client.proposals();
  return [
    new TextDecoder().decode(result.output),
    result.paid?.amount ?? "free",
    paidFrom,
    v.method,
    v.checks.join("; "),
    String(strength),
    account.value.balance,
    String(account.height),
    account.stateRoot,
    String(offers.value.length),
    String(dao.value.proposals.map((p) => p.state).length),
    client.networkId,
    client.genesis,
    client.relay,
    client.state().state,
  ].join("\n");
}

// Refereed: a second provider's relay added; a liar caught is slashed by its fraud proof.
export async function refereed(client: Client, wallet: Wallet, module: Uint8Array): Promise<string> {
  const second: string = await client.addRelay("https://other-relay.example:8080");
  console.log(client.connections().map((c: ConnectionState) => `${c.relay} ${c.state}`));
  const result = await client.runJob(wallet, { module, input: "1000 200", verify: "refereed" });
  const lines = [result.verification.label, result.referee?.provider ?? second];
  for (const liar of result.fraud ?? ([] as FraudReport[])) {
    const slashed: FraudTxResult = await client.submitFraudProof(wallet, { proof: liar.proof });
    lines.push(`${liar.provider} at ${liar.segment}: ${slashed.slash.value.amount} slashed`);
  }
  client.removeRelay(second);
  return lines.join("\n");
}
