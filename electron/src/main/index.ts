// The Electron main process: loads the native module, opens one window on the page Vite
// built (or, in development, on Vite's dev server), and answers the page's bridge calls
// over IPC.

import { existsSync } from 'node:fs'

import { BrowserWindow, app, ipcMain } from 'electron'

import { CHANNELS } from '../shared/ipc.js'
import { type NativeModule, appInfo, hashText, textStats } from './answers.js'
import { BUILD_MODE, resolvePath } from './paths.js'

/** The .node file of this main's own mode and target (build.json), loaded directly. */
function loadNative(): NativeModule {
  const binaryPath = resolvePath(__dirname, 'nativeModule')
  if (!existsSync(binaryPath)) {
    throw new Error(`tachikoma: ${binaryPath} does not exist; build it with the ` +
      `native-module step in mode ${BUILD_MODE}`)
  }
  const exports = require(binaryPath) as Omit<NativeModule, 'binaryPath'>
  return { ...exports, binaryPath }
}

const native = loadNative()

function answerIpc(): void {
  ipcMain.handle(CHANNELS.info, () =>
    appInfo(native, {
      electron: process.versions.electron,
      node: process.versions.node,
      chrome: process.versions.chrome,
    }),
  )
  ipcMain.handle(CHANNELS.hashText, (_event, text: unknown) => hashText(native, text))
  ipcMain.handle(CHANNELS.textStats, (_event, text: unknown) => textStats(native, text))
}

/** TACHIKOMA_DEV_URL (a development build only): the page from Vite's dev server, which
 * hot-reloads web/src, instead of web/dist/<mode> (`nox -s dev`; docs/app.md). */
function devUrl(): string | undefined {
  const url = process.env.TACHIKOMA_DEV_URL
  if (url === undefined || url === '') return undefined
  if (BUILD_MODE !== 'development') {
    console.warn(`tachikoma: TACHIKOMA_DEV_URL ignored: this main was built in mode ${BUILD_MODE}`)
    return undefined
  }
  if (!/^https?:\/\//.test(url)) {
    throw new Error(`tachikoma: TACHIKOMA_DEV_URL=${url} is not an http(s) URL; set it to the ` +
      'address nox -s dev prints for web-dev, e.g. http://127.0.0.1:5173/')
  }
  return url
}

const DEV_URL = devUrl()

function createWindow(): BrowserWindow {
  const window = new BrowserWindow({
    width: 960,
    height: 720,
    title: 'Tachikoma',
    webPreferences: {
      preload: resolvePath(__dirname, 'preload'),
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: true,
    },
  })
  if (DEV_URL === undefined) void window.loadFile(resolvePath(__dirname, 'webEntry'))
  else void window.loadURL(DEV_URL)
  return window
}

answerIpc()

app.whenReady().then(
  () => {
    createWindow()
    // macOS: re-open a window when the dock icon is clicked and none is open.
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) createWindow()
    })
  },
  (error: unknown) => {
    console.error('tachikoma: Electron failed to start:', error)
    app.exit(1)
  },
)

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit()
})
