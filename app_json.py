import json
json.loads("{}")
