import sys, json, torch
sys.path.insert(0, 'bench')
import ablation as A
from pathlib import Path
from safetensors.torch import load_file, save_file
from safetensors import safe_open
from gradguide.train.build import build_generator
from gradguide.train.trainer import _seed_everything
b = A.BUDGETS['gpu']
arm = [a for a in A.arms(27) if a.name == 'default_x4'][0]
r = A.build_recipe(arm, b, Path('/tmp/w'), 'cpu', 0.0)
_seed_everything(r.train.seed)
G0 = build_generator(r)
sd0 = G0.state_dict()
src = '/work/.device/5/default_x4.safetensors'
ema = load_file(src)
with safe_open(src, 'pt') as fh: meta = fh.metadata()
t = int(meta['iteration']); d = r.train.ema
w = d ** t
print('t', t, 'd^t', w, 'missing', [k for k in sd0 if k not in ema][:5])
out = {k: ((ema[k].float() - w * sd0[k].float()) / (1 - w)) for k in ema}
save_file(out, '/tmp/debiased.safetensors', metadata=meta)
