#!/usr/bin/env python3
"""Layers point one way: core <- loop <- {conn, watch} <- {acceptor,
connector} <- server, and proto/ includes nothing of net/. A file may include
headers of a lower layer and of its own module, never of a higher layer or
of a sibling (acceptor and connector do not know each other). Fails, naming
the file and the include, on any upward or sideways include.
Usage: check-layers.py SOURCE_DIR"""
import os
import re
import sys

src = sys.argv[1]
# module -> layer; a header or source belongs to the module its name starts with
LAYERS = {'core': 0, 'loop': 1, 'conn': 2, 'watch': 2, 'acceptor': 3, 'connector': 3, 'tls': 3,
          'server': 4, 'tern': 5}
NET_MODULES = [m for m in LAYERS if m != 'core']


def module_of(path):
    d, name = os.path.split(path)
    d = os.path.basename(d)
    if d in ('core', 'proto'):
        return d
    base = re.sub(r'(_internal)?\.[ch]$', '', name)
    if base not in LAYERS:
        sys.exit(f'check-layers: {path}: no layer for module "{base}"; add it to LAYERS')
    return base


headers = {}
for d in ('core', 'net', 'proto'):
    for n in os.listdir(os.path.join(src, d)):
        if n.endswith('.h'):
            headers[n] = os.path.join(d, n)

bad = []
checked = 0
for d in ('core', 'net', 'proto'):
    for n in sorted(os.listdir(os.path.join(src, d))):
        if not n.endswith(('.c', '.h')):
            continue
        path = os.path.join(d, n)
        mod = module_of(path)
        for m in re.finditer(r'^#include "([^"]+)"', open(os.path.join(src, path)).read(), re.M):
            inc = m.group(1)
            if inc not in headers:
                continue
            checked += 1
            imod = module_of(headers[inc])
            if mod == imod:
                continue
            if mod == 'proto' or mod == 'core':
                ok = imod in ('core', 'proto') if mod == 'proto' else imod == 'core'
            elif imod in ('core', 'proto'):
                ok = True
            else:
                ok = LAYERS[imod] < LAYERS[mod]
            if not ok:
                bad.append(f'{path} includes {inc} ({mod} -> {imod}: upward or sideways)')
if bad:
    print('FAIL: layers point one way, these do not:')
    print('\n'.join(bad))
    sys.exit(1)
print(f'ok: {checked} includes, every one downward or within its module')
