/**
 * The status page served at / of `marsd --metrics`: its files, built into the daemon
 * (no CDN, nothing fetched from elsewhere).
 */
export interface Asset {
  type: string;
  body: string;
}

export const statusPageAssets: ReadonlyMap<string, Asset> = new Map<string, Asset>([['/', { type: 'text/plain; charset=utf-8', body: 'marsd: /metrics\n' }]]);
