/**
 * The status page served at / of `marsd --metrics`: three small files built into the
 * daemon (no CDN, no framework, nothing fetched from elsewhere). The script reads
 * /api/status and /api/history once, then follows /api/events (server-sent events, with
 * polling when the stream is down). It builds the page with DOM calls and textContent
 * only, never innerHTML, so no name it shows can become markup. The page is read-only.
 */
import { statusPageCss } from './status-page-css.js';
import { statusPageScript } from './status-page-script.js';

export interface Asset {
  type: string;
  body: string;
}

const html = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MARS status</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>MARS <span id="host"></span></h1>
  <span id="live" class="badge down" data-testid="live">connecting</span>
  <span id="updated"></span>
</header>
<main>
  <section id="cluster"><h2>Cluster</h2><ul id="hosts" data-testid="hosts"></ul><p id="space"></p></section>
  <div id="resources" data-testid="resources"></div>
</main>
<footer>Read-only. Data: <a href="/metrics">/metrics</a>, <a href="/api/status">/api/status</a>, <a href="/api/history">/api/history</a>.</footer>
</body>
</html>
`;

export const statusPageAssets: ReadonlyMap<string, Asset> = new Map<string, Asset>([
  ['/', { type: 'text/html; charset=utf-8', body: html }],
  ['/index.html', { type: 'text/html; charset=utf-8', body: html }],
  ['/app.js', { type: 'text/javascript; charset=utf-8', body: statusPageScript }],
  ['/app.css', { type: 'text/css; charset=utf-8', body: statusPageCss }],
]);
