// The contract between this page and the Electron preload (electron/src/preload/index.ts),
// which exposes it as `window.tachikoma` through contextBridge. In a plain browser it is
// absent and the page falls back to what it can compute itself.

// The shapes themselves are the Electron side's (electron/src/shared/ipc.ts), imported
// as types only: nothing of the Electron package reaches the page's bundle.
import type { TachikomaBridge } from '../../../electron/src/shared/ipc'

export type { AppInfo, TachikomaBridge, TextStats } from '../../../electron/src/shared/ipc'

declare global {
  interface Window {
    tachikoma?: TachikomaBridge
  }
}

/** The bridge when running inside the Electron app, else null. */
export function bridge(): TachikomaBridge | null {
  return typeof window !== 'undefined' && window.tachikoma ? window.tachikoma : null
}
