/**
 * Pure helpers of the producer's data path: a byte budget for backpressure and a pool of
 * reusable batch buffers. No I/O.
 *
 * ByteBudget: `acquire(n)` resolves once n more bytes fit under the limit, in FIFO order (a
 * later small request never overtakes an earlier large one, so sends keep their order). One
 * request larger than the whole limit is let through when nothing else is held, so a single
 * oversized send cannot deadlock. Memory in flight therefore stays ≤ max(limit, one request).
 *
 * BufferPool: batches are encoded into buffers of power-of-two size classes that are reused
 * after their batch is acknowledged, so steady-state producing allocates nothing and the
 * transport sees the same memory again (UCX's registration cache hits on RDMA). Idle buffers
 * are kept up to `idleBytesMax`; beyond that they are left to the GC.
 */
import { ArgumentError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';

interface Waiter { bytes: number; resolve: () => void }

export class ByteBudget {
  private heldBytes = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly limitBytes: number) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes < 1) {
      throw new ArgumentError(`byte budget ${limitBytes} must be a positive integer`);
    }
  }

  get held(): number {
    return this.heldBytes;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  acquire(bytes: number): Promise<void> {
    invariant(Number.isSafeInteger(bytes) && bytes >= 0, 'acquire a byte count', { bytes });
    if (this.waiters.length === 0 && this.fits(bytes)) {
      this.heldBytes += bytes;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push({ bytes, resolve }));
  }

  release(bytes: number): void {
    invariant(bytes >= 0 && bytes <= this.heldBytes, 'release what was acquired',
      { bytes, held: this.heldBytes });
    this.heldBytes -= bytes;
    while (this.waiters.length > 0 && this.fits(this.waiters[0]!.bytes)) {
      const waiter = this.waiters.shift()!;
      this.heldBytes += waiter.bytes;
      waiter.resolve();
    }
  }

  private fits(bytes: number): boolean {
    return this.heldBytes + bytes <= this.limitBytes || this.heldBytes === 0;
  }
}

const SIZE_CLASS_MIN_BYTES = 4096;

export class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  private idleBytes = 0;

  constructor(private readonly idleBytesMax: number) {}

  /** A buffer of at least `bytes` (its length is the size class). */
  take(bytes: number): Uint8Array {
    const size = sizeClass(bytes);
    const buffer = this.free.get(size)?.pop();
    if (buffer === undefined) return new Uint8Array(size);
    this.idleBytes -= size;
    return buffer;
  }

  give(buffer: Uint8Array): void {
    const size = buffer.byteLength;
    invariant(size === sizeClass(size), 'pool buffers come from take()', { size });
    if (this.idleBytes + size > this.idleBytesMax) return;
    let list = this.free.get(size);
    if (list === undefined) {
      list = [];
      this.free.set(size, list);
    }
    list.push(buffer);
    this.idleBytes += size;
  }

  get idle(): number {
    return this.idleBytes;
  }
}

export function sizeClass(bytes: number): number {
  let size = SIZE_CLASS_MIN_BYTES;
  while (size < bytes) size *= 2;
  return size;
}
