// A small market used by the query and market-data tests.
import assert from 'node:assert/strict';
import { ingest } from './rtad.mjs';

export const PROTOCOLS = {
    'q-uni': { name: 'Uniswap Q', category: 'Dexes',
        chains: { ethereum: 5e9, arbitrum: 1e9, polygon: 2e8 } },
    'q-aave': { name: 'Aave Q', category: 'Lending', chains: { ethereum: 8e9, polygon: 5e8 } },
    'q-curve': { name: 'Curve Q', category: 'Dexes', chains: { ethereum: 2e9, arbitrum: 3e8 } },
    'q-tiny': { name: 'Tiny', category: 'Yield', chains: { base: 5e5 } },
};

/** Rows as protocol x chain pairs: [{protocol, chain, tvl, name, category}] */
export function rows() {
    const out = [];
    for (const [protocol, p] of Object.entries(PROTOCOLS)) {
        for (const [chain, tvl] of Object.entries(p.chains)) {
            out.push({ protocol, chain, tvl, name: p.name, category: p.category });
        }
    }
    return out;
}

/**
 * Ingests the market. q-uni/ethereum was 4e9 24.5 h ago (change_24h = +0.25) and
 * q-aave/ethereum was 1e10 24.5 h ago (change_24h = -0.2); every other pair is new (changes
 * unknown).
 */
export async function seedMarket(rtad) {
    const now = Math.floor(Date.now() / 1000);
    const old = now - Math.round(24.5 * 3600);
    let r = await ingest(rtad, { tvl: [
        { protocol: 'q-uni', chain: 'ethereum', tvl: 4e9, timestamp: old,
            name: 'Uniswap Q', category: 'Dexes' },
        { protocol: 'q-aave', chain: 'ethereum', tvl: 1e10, timestamp: old,
            name: 'Aave Q', category: 'Lending' },
    ] });
    assert.equal(r.status, 200, r.text);
    const tvl = rows().map((x) => ({ protocol: x.protocol, chain: x.chain, tvl: x.tvl,
        timestamp: now - 60, name: x.name, category: x.category }));
    r = await ingest(rtad, { tvl, prices: [
        { token: 'coingecko:usd-coin', price: 1.001, timestamp: now - 60, symbol: 'USDC',
            confidence: 0.99 },
        { token: 'ethereum:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48', price: 0.999,
            timestamp: now - 60 },
    ] });
    assert.equal(r.status, 200, r.text);
    return r.json;
}
