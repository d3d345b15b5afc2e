// The tests' Node xDS client (@grpc/grpc-js-xds), as internal/xdsclient is
// grpc-go's: calls wayfinder.examples.hello.HelloService/SayHello through an
// xds:/// target, one call after another, and prints one line per call
// ("ok <server name>" or "err <code> <message>") until its standard input
// closes. The bootstrap comes from GRPC_XDS_BOOTSTRAP_CONFIG. The first call
// waits for the channel to be ready; later calls are fail-fast with a
// deadline. The packages come from NODE_PATH (make xds-clients).
//
// With a third argument name=value, every call carries that request header
// (for a ring_hash route that hashes on it).
//
// Usage: node xdsclient.js <hello.proto> [target [name=value]]
'use strict';

const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');
const protoLoader = require('@grpc/proto-loader');

xds.register();
const [proto, target = 'xds:///hello', header] = process.argv.slice(2);
const metadata = new grpc.Metadata();
if (header) {
  const i = header.indexOf('=');
  metadata.set(header.slice(0, i), header.slice(i + 1));
}
const def = protoLoader.loadSync(proto, { keepCase: true });
const hello = grpc.loadPackageDefinition(def).wayfinder.examples.hello;
const client = new hello.HelloService(target, grpc.credentials.createInsecure());

let done = false;
process.stdin.on('end', () => { done = true; });
process.stdin.resume();

function finish() {
  client.close();
  process.stdout.write('', () => process.exit(0));
}

let first = true;
function call() {
  if (done) {
    finish();
    return;
  }
  const deadline = new Date(Date.now() + (first ? 60000 : 5000));
  client.SayHello({ name: 'xds', num1: 1, num2: 2 }, metadata, { deadline, waitForReady: first }, (err, reply) => {
    if (done) {
      finish();
      return;
    }
    if (err) {
      process.stdout.write(`err ${grpc.status[err.code]} ${String(err.details).replace(/\n/g, ' ')}\n`);
    } else {
      first = false;
      const words = reply.message.split(' ');
      process.stdout.write(`ok ${words[words.length - 1]}\n`);
    }
    setImmediate(call);
  });
}
call();
