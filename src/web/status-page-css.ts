/** The status page's style sheet (served as /app.css). */
export const statusPageCss = String.raw`
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #ffffff; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1em; align-items: baseline; padding: 0.6em 1.2em; border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { font-size: 1.3em; margin: 0; }
#updated { color: var(--muted); }
main { padding: 0.8em 1.2em; }
h2 { font-size: 1.1em; margin: 0.6em 0 0.4em; }
ul#hosts { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 0.5em; }
ul#hosts li { border: 1px solid var(--line); border-radius: 6px; padding: 0.25em 0.6em; background: var(--panel); }
.badge { display: inline-block; border-radius: 10px; padding: 0 0.6em; font-size: 0.85em; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); }
.badge.bad, .badge.down { background: var(--bad); }
.badge.warn { background: var(--warn); }
.resource { border: 1px solid var(--line); border-radius: 8px; margin: 1em 0; padding: 0.6em 1em; }
.resource h2 { display: flex; gap: 0.6em; align-items: center; }
.facts { display: flex; flex-wrap: wrap; gap: 0.4em 1.6em; margin: 0.3em 0 0.6em; }
.facts span b { font-weight: 600; }
table { border-collapse: collapse; margin: 0.4em 0; }
th, td { border-bottom: 1px solid var(--line); padding: 0.2em 0.8em 0.2em 0; text-align: left; }
th { color: var(--muted); font-weight: 500; }
.bar { position: relative; width: 320px; height: 14px; background: var(--panel); border: 1px solid var(--line); border-radius: 3px; display: inline-block; vertical-align: middle; }
.bar > div { height: 100%; background: var(--ok); border-radius: 2px; }
.bars div.row { margin: 0.2em 0; }
.bars .label { display: inline-block; width: 7em; color: var(--muted); }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plot { border: 1px solid var(--line); border-radius: 6px; padding: 0.3em 0.5em; }
.plot .title { color: var(--muted); font-size: 0.9em; }
.plot svg { display: block; }
.legend span { margin-right: 1em; font-size: 0.85em; }
footer { color: var(--muted); padding: 1em 1.2em; font-size: 0.85em; }
`;
