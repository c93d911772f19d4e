// A local SMTP sink for trying alerts by hand: accepts every message on 127.0.0.1:2525 (or
// PORT) and prints its headers and text. Uses the smtp-server and mailparser dev dependencies
// (npm ci at the repository root installs them).
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

const port = Number(process.env.PORT || 2525);
const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
        simpleParser(stream).then((mail) => {
            console.log('--- mail', new Date().toISOString());
            for (const h of ['from', 'to', 'subject', 'date', 'message-id', 'auto-submitted',
                'list-unsubscribe']) {
                const v = mail.headers.get(h);
                if (v) console.log(`${h}: ${typeof v === 'object' ? (v.text || JSON.stringify(v)) : v}`);
            }
            console.log('\n' + (mail.text || '').trim() + '\n');
            callback();
        }, callback);
    },
});
server.listen(port, '127.0.0.1', () => console.log(`mail sink on smtp://127.0.0.1:${port}`));
