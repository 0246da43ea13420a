// Exposes `window.tachikoma` to the page. Runs sandboxed (only `electron` can be required),
// so the channel names are written out here and checked against shared/ipc.ts by type only.

import { contextBridge, ipcRenderer } from 'electron'

import type { AppInfo, Channel, TachikomaBridge, TextStats } from '../shared/ipc.js'

const INFO: Channel = 'tachikoma:info'
const HASH_TEXT: Channel = 'tachikoma:hash-text'
const TEXT_STATS: Channel = 'tachikoma:text-stats'

const bridge: TachikomaBridge = {
  info: () => ipcRenderer.invoke(INFO) as Promise<AppInfo>,
  hashText: (text: string) => ipcRenderer.invoke(HASH_TEXT, text) as Promise<string>,
  textStats: (text: string) => ipcRenderer.invoke(TEXT_STATS, text) as Promise<TextStats>,
}

contextBridge.exposeInMainWorld('tachikoma', bridge)
