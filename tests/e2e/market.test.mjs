// Market data reads: /v1/protocols, /v1/protocols/{slug}, /v1/chains, /v1/prices/{token}.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import { approx, assertError, ISO_RE } from './lib/check.mjs';
import { PROTOCOLS, seedMarket } from './lib/seed.mjs';

describe('market data', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad();
        key = (await makeKey(rtad, { user: 'viewer', role: 'reader', tier: 'enterprise' })).key;
        await seedMarket(rtad);
    });
    after(async () => { await rtad?.stop(); });

    const get = async (path) => {
        const r = await rtad.api('GET', path, { key });
        return r;
    };
    const sum = (o) => Object.values(o).reduce((s, v) => s + v, 0);

    it('GET /v1/protocols lists every protocol with its total TVL', async () => {
        const r = await get('/v1/protocols');
        assert.equal(r.status, 200, r.text);
        assert.ok(Array.isArray(r.json.data), r.text);
        const by = Object.fromEntries(r.json.data.map((p) => [p.protocol, p]));
        assert.deepEqual(Object.keys(by).sort(), Object.keys(PROTOCOLS).sort());
        for (const [slug, p] of Object.entries(PROTOCOLS)) {
            assert.equal(by[slug].name, p.name);
            assert.equal(by[slug].category, p.category);
            approx(by[slug].tvl, sum(p.chains), 1e-12, `${slug} tvl ${by[slug].tvl}`);
        }
    });

    it('GET /v1/protocols/{slug} gives per-chain values', async () => {
        const r = await get('/v1/protocols/q-uni');
        assert.equal(r.status, 200, r.text);
        const p = r.json;
        assert.equal(p.protocol, 'q-uni');
        assert.equal(p.name, 'Uniswap Q');
        assert.equal(p.category, 'Dexes');
        approx(p.tvl, 6.2e9, 1e-12);
        assert.ok(Array.isArray(p.chains), r.text);
        const chains = Object.fromEntries(p.chains.map((c) => [c.chain, c.tvl]));
        assert.deepEqual(chains, PROTOCOLS['q-uni'].chains);
        const eth = p.chains.find((c) => c.chain === 'ethereum');
        approx(eth.change_24h, 0.25, 1e-6);
        for (const c of p.chains) {
            if (c.timestamp !== undefined) assert.match(c.timestamp, ISO_RE);
        }
    });

    it('unknown protocol -> 404 protocol_not_found', async () => {
        assertError(await get('/v1/protocols/no-such-protocol'), 404, 'protocol_not_found');
    });

    it('GET /v1/chains sums TVL and counts protocols per chain', async () => {
        const r = await get('/v1/chains');
        assert.equal(r.status, 200, r.text);
        const by = Object.fromEntries(r.json.data.map((c) => [c.chain, c]));
        const expect = {};
        for (const p of Object.values(PROTOCOLS)) {
            for (const [chain, tvl] of Object.entries(p.chains)) {
                expect[chain] ??= { tvl: 0, protocols: 0 };
                expect[chain].tvl += tvl;
                expect[chain].protocols += 1;
            }
        }
        assert.deepEqual(Object.keys(by).sort(), Object.keys(expect).sort());
        for (const [chain, e] of Object.entries(expect)) {
            approx(by[chain].tvl, e.tvl, 1e-12, `${chain}: ${JSON.stringify(by[chain])}`);
            assert.equal(by[chain].protocols, e.protocols, chain);
        }
    });

    it('GET /v1/prices/{token} returns the latest price', async () => {
        const r = await get('/v1/prices/coingecko:usd-coin');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.token, 'coingecko:usd-coin');
        assert.equal(r.json.price, 1.001);
        assert.equal(r.json.symbol, 'USDC');
        const r2 = await get('/v1/prices/ethereum:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48');
        assert.equal(r2.status, 200, r2.text);
        assert.equal(r2.json.price, 0.999);
    });

    it('a percent-encoded token path works too', async () => {
        const r = await get('/v1/prices/coingecko%3Ausd-coin');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.token, 'coingecko:usd-coin');
    });

    it('unknown token -> 404 token_not_found', async () => {
        assertError(await get('/v1/prices/coingecko:nope'), 404, 'token_not_found');
    });

    it('a new ingest is visible immediately', async () => {
        const r = await rtad.api('POST', '/v1/ingest', { key: rtad.adminKey, body: {
            tvl: [{ protocol: 'q-tiny', chain: 'ethereum', tvl: 1e6 }],
            prices: [{ token: 'coingecko:usd-coin', price: 1.002 }] } });
        assert.equal(r.status, 200, r.text);
        const p = await get('/v1/protocols/q-tiny');
        approx(p.json.tvl, 1.5e6, 1e-12);
        assert.equal(p.json.chains.length, 2);
        assert.equal((await get('/v1/prices/coingecko:usd-coin')).json.price, 1.002);
        const c = await get('/v1/chains');
        const eth = c.json.data.find((x) => x.chain === 'ethereum');
        assert.equal(eth.protocols, 4);
    });
});
