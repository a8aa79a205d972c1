// Build the parcel viewer into dist/: dist/index.html and dist/assets/viewer.{js,css} (esbuild).
// The API serves dist/ at /viewer/ (plugins/cbm_viewer.py); no CDN, everything is bundled.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist/assets", { recursive: true });
await build({
  entryPoints: { viewer: "src/main.js" },
  bundle: true,
  minify: true,
  sourcemap: true,
  target: ["es2020"],
  format: "iife",
  outdir: "dist/assets",
  legalComments: "linked",
  logLevel: "info",
});
copyFileSync("src/index.html", "dist/index.html");
