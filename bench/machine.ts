/**
 * The machine's own limits, measured in the same run as pmq so pmq's figures can be read as
 * ratios of them: memory copy bandwidth (cold: 1 MiB copies walking areas much larger than the
 * caches, as a record's bytes are copied once on their way) and ucx_perftest's put bandwidth
 * and active-message latency on the transport pmq used (bench/ucx-perftest.ts).
 */
import { round } from './stats.js';
import { runPerftest } from './ucx-perftest.js';

const MIB = 1024 * 1024;

export interface MachineLimits {
  memcpyMBps: number;
  /**
   * Per transport: ucp_put_bw MB/s at 64 KiB and at 1 MiB, ucp_am_lat round trip (2 × one-way)
   * µs at 64 B.
   */
  ucx: Record<string, { putMBps: number | null; putMBps1MiB: number | null;
    amRoundTripUs: number | null }>;
}

/** Copies 1 MiB at a time from one `areaBytes` area to another, round and round, for at least
 *  `ms`; returns MB/s (10^6 bytes). */
export function memcpyBandwidth(areaBytes: number, ms: number): number {
  const source = new Uint8Array(areaBytes).fill(1);
  const target = new Uint8Array(areaBytes).fill(2);   // touch both: no page faults in the loop
  const chunks = areaBytes / MIB;
  let copied = 0;
  const started = performance.now();
  while (performance.now() - started < ms) {
    for (let i = 0; i < chunks; i += 1) {
      target.set(source.subarray(i * MIB, (i + 1) * MIB), i * MIB);
    }
    copied += areaBytes;
  }
  return round(copied / ((performance.now() - started) / 1000) / 1e6, 0);
}

export async function measureMachine(transports: string[], quick: boolean):
  Promise<MachineLimits> {
  const memcpyMBps = memcpyBandwidth((quick ? 32 : 256) * MIB, quick ? 300 : 2000);
  const ucx: MachineLimits['ucx'] = {};
  for (const tls of transports) {
    const put = await runPerftest('ucp_put_bw', tls, 64 * 1024, quick ? 500 : 20_000);
    const put1MiB = await runPerftest('ucp_put_bw', tls, MIB, quick ? 50 : 2_000);
    const am = await runPerftest('ucp_am_lat', tls, 64, quick ? 2000 : 100_000);
    ucx[tls] = { putMBps: put?.bandwidthMBps ?? null,
      putMBps1MiB: put1MiB?.bandwidthMBps ?? null,
      amRoundTripUs: am === null ? null : round(2 * am.latencyUsP50, 2) };
  }
  return { memcpyMBps, ucx };
}
