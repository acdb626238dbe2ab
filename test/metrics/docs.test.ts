/**
 * Every metric the exporter registers is documented in docs/metrics.md, and every mars_*
 * name the Grafana dashboard and the alert rules use is one the exporter has.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MarsMetrics } from '../../src/metrics/prometheus.js';
import { repoRoot } from '../support/processes.js';

async function registered(): Promise<Set<string>> {
  const metrics = new MarsMetrics('alpha');
  return new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
}

void test('every registered metric is documented in docs/metrics.md', async () => {
  const doc = await readFile(join(repoRoot, 'docs', 'metrics.md'), 'utf8');
  const names = await registered();
  assert.ok(names.size > 20);
  for (const name of names) assert.ok(doc.includes(`\`${name}\``), `${name} is not in docs/metrics.md`);
});

void test('the dashboard and the alert rules use only metrics the exporter has', async () => {
  const names = await registered();
  for (const file of ['contrib/grafana-dashboard.json', 'contrib/prometheus-alerts.yml']) {
    const text = await readFile(join(repoRoot, file), 'utf8');
    const used = new Set([...text.matchAll(/mars_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')));
    assert.ok(used.size >= 5, `${file} uses mars_* metrics`);
    for (const name of used) assert.ok(names.has(name), `${file} uses ${name}, which the exporter does not have`);
  }
  JSON.parse(await readFile(join(repoRoot, 'contrib/grafana-dashboard.json'), 'utf8'));
});
