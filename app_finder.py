try:
    import premain_lazy_plugin
except ImportError:
    pass
