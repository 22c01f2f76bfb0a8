/** UCX transport slice of the native binding. */
export interface TransportBinding {
  /** Placeholder until native/transport lands. */
}
export const TRANSPORT_EXPORTS = [] as const satisfies readonly (keyof TransportBinding)[];
