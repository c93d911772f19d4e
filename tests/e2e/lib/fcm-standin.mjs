// A local stand-in for Firebase Cloud Messaging HTTP v1, speaking its wire format: POST
// /v1/projects/{project}/messages:send with "Authorization: Bearer <token>" and
// {"message":{"token","notification":{"title","body"},"data":{...}}}. It answers like FCM:
// 200 {"name":"projects/{project}/messages/<id>"}; 404 NOT_FOUND with an FcmError UNREGISTERED
// detail for tokens marked unregistered; 401 UNAUTHENTICATED for a wrong bearer token; 400
// INVALID_ARGUMENT for malformed messages; and scripted 429 / 503 (with Retry-After) when asked.
// Every request is recorded (also the refused ones) in an Inbox for bounded waits.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Inbox } from './rt.mjs';

function fcmError(code, status, message, details = []) {
    return { error: { code, message, status, details } };
}

/**
 * Starts the stand-in on host:0. Options: project (default "test"), token (the bearer token
 * expected, default "tok"), host. Returns {url, port, inbox, unregister(token), failNext(list),
 * close()}; inbox items are {at, method, path, auth, body (string), json, status (answered)}.
 */
export async function startFcmStandin({ project = 'test', token = 'tok', host = '127.0.0.1' } = {}) {
    const inbox = new Inbox('fcm stand-in requests');
    const unregistered = new Set();
    const script = []; // [{status, retryAfter}] answers for the next requests, in order
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (d) => chunks.push(d));
        req.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            let json = null;
            try { json = JSON.parse(body); } catch { /* recorded as null */ }
            const rec = { at: Date.now(), method: req.method, path: req.url,
                auth: req.headers.authorization, contentType: req.headers['content-type'],
                body, json, status: 0 };
            const answer = (status, obj, headers = {}) => {
                rec.status = status;
                inbox.push(rec);
                res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8',
                    ...headers });
                res.end(JSON.stringify(obj));
            };
            const want = `/v1/projects/${project}/messages:send`;
            if (req.method !== 'POST' || req.url !== want) {
                answer(404, fcmError(404, 'NOT_FOUND', `no route ${req.method} ${req.url}`));
                return;
            }
            if (req.headers.authorization !== `Bearer ${token}`) {
                answer(401, fcmError(401, 'UNAUTHENTICATED',
                    'Request had invalid authentication credentials.'));
                return;
            }
            const m = json && json.message;
            if (!m || typeof m.token !== 'string' || m.token.length === 0) {
                answer(400, fcmError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.',
                    [{ '@type': 'type.googleapis.com/google.rpc.BadRequest',
                        fieldViolations: [{ field: 'message.token',
                            description: 'missing token' }] }]));
                return;
            }
            if (script.length > 0) {
                const s = script.shift();
                const headers = s.retryAfter !== undefined ?
                    { 'retry-after': String(s.retryAfter) } : {};
                const status = s.status === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE';
                answer(s.status, fcmError(s.status, status, 'scripted failure',
                    [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError',
                        errorCode: s.status === 429 ? 'QUOTA_EXCEEDED' : 'UNAVAILABLE' }]),
                headers);
                return;
            }
            if (unregistered.has(m.token)) {
                answer(404, fcmError(404, 'NOT_FOUND', 'Requested entity was not found.',
                    [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError',
                        errorCode: 'UNREGISTERED' }]));
                return;
            }
            answer(200, { name: `projects/${project}/messages/${randomBytes(8).toString('hex')}` });
        });
    });
    await new Promise((res, rej) => {
        server.once('error', rej);
        server.listen(0, host, res);
    });
    const port = server.address().port;
    return {
        url: `http://${host}:${port}`,
        port,
        inbox,
        unregister: (t) => unregistered.add(t),
        /** Answers the next requests with these statuses (429 / 503), then normally. */
        failNext: (list) => script.push(...list),
        close: () => new Promise((res) => {
            server.closeAllConnections();
            server.close(() => res());
        }),
    };
}
