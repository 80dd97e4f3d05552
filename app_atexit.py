print('main done')
